#!/usr/bin/env bash
# DAVIS 2016 on a lent GPU machine, in one call of about 7 minutes on an H200 with the benchmark's online settings
# until 2026-12-06 (100 fine-tuning steps of 4; today's 400 of 2 plus the motion stream are not timed on a GPU yet)
# (docs/results.md, "GPU"):
# 1. restore the data pack made by benchmarks/device_pack.py as a DAVIS root with PNG frames;
# 2. training and inference throughput at 480p (854x480) of the CPU parent's architecture, the
#    ResNet-50 one and the faithful DeepLab-v2 ResNet-101 (benchmarks/train_speed.py, model_speed.py);
# 3. a ResNet-50 parent, output stride 8 (benchmarks/davis2016-gpu-resnet50.yaml), on DAVIS 2016 train
#    at 240p, with as many steps as fit in TRAIN_SECONDS at the measured step time;
# 4. the val split fine-tuned and segmented exactly as benchmarks/davis2016.py does, in 4 parallel
#    shards, upsampled to 480p. The 480p ground truth does not travel, so OUT/results.tar brings the
#    masks back for `masktrack eval` here.
# Given a parent checkpoint instead of TRAIN_SECONDS, only step 4 runs, from that parent; with STEPS=N
# in the environment, steps 2 and 3's timing are skipped and the parent trains N steps.
#
#   benchmarks/davis2016_gpu.sh PACK OUT [TRAIN_SECONDS | PARENT.safetensors]
#   benchmarks/davis2016_gpu.sh .device-pack "$OUT" 200
#   benchmarks/davis2016_gpu.sh .device-pack "$OUT" src/masktrack/weights/default.safetensors
set -uo pipefail
pack=$1 out=$2 budget=${3:-200}
work=/tmp/masktrack-gpu
data=$work/davis2016
# PyAV is not installed there and cannot be fetched; only video files need it, so an empty module stands in.
mkdir -p "$work/stubs" && : > "$work/stubs/av.py"
export PYTHONPATH=$PWD/src:$work/stubs PYTHONUNBUFFERED=1
log() { echo "== $(date +%T) $*"; }

log unpack
python3 benchmarks/device_pack.py unpack --pack "$pack" --out "$data" --workers 16 || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision, cv2; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cv2', cv2.__version__)"

parent=$work/parent/model.safetensors
if [[ $budget == *.safetensors ]]; then
    parent=$budget  # step 4 only
else
    if [[ -z ${STEPS:-} ]]; then
        log "throughput at 480p"
        for case in "mobilenet_v2 16 128 on" "resnet50 8 128 on" "resnet101 8 0 off"; do
            read -r backbone stride head skip <<<"$case"
            python3 benchmarks/train_speed.py --device cuda --amp --size 480x854 --batch-size 8 --backbones "$backbone" \
                --output-strides "$stride" --head "$head" --skip "$skip" --threads 16 --steps 10 --warmup 3
            python3 benchmarks/model_speed.py --device cuda --amp --size 854x480 --backbones "$backbone" \
                --output-strides "$stride" --heads "$head" --skip "$skip" --threads 16 --runs 30 --warmup 5
        done 2>&1 | tee "$out/throughput.md"

        log "ResNet-50 step time at 240p"
        step_s=$(python3 benchmarks/train_speed.py --device cuda --amp --size 240x427 --batch-size 8 --backbones resnet50 \
            --output-strides 8 --head 128 --skip on --threads 16 --steps 10 --warmup 3 | tee -a "$out/throughput.md" \
            | awk -F'|' '/^\| resnet50/ {print $5}')
        steps=$(python3 -c "print(max(500, min(20000, int(0.75 * $budget / $step_s) // 100 * 100)))")
        log "training $steps steps ($step_s s/step measured)"
    else
        steps=$STEPS
        log "training $steps steps"
    fi
    timeout $((budget * 2)) python3 -m masktrack train --config benchmarks/davis2016.yaml \
        --config benchmarks/davis2016-gpu-resnet50.yaml --data "$data:train" --pretrained "$data/resnet50.safetensors" \
        --out "$work/parent" --steps "$steps" --quiet
    cp "$work/parent/metrics.csv" "$work/parent/config.yaml" "$out/"
fi
[ -f "$parent" ] || { log "no parent: $parent"; exit 1; }

log "val: fine-tune and segment in 4 shards"
shards=$(python3 - "$pack/frames.json" "$data/ImageSets/val.txt" <<'EOF'
import json, sys
frames = json.load(open(sys.argv[1]))
shards = [[] for _ in range(4)]
for name in sorted(open(sys.argv[2]).read().split(), key=frames.get, reverse=True):
    min(shards, key=lambda shard: sum(map(frames.get, shard))).append(name)
print("\n".join(" ".join(shard) for shard in shards))
EOF
)
index=0
while read -r names; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=4 python3 benchmarks/davis2016.py --davis "$data" --parent "$parent" \
        --run "$work/shard$index" --sequences $names --doc '' >"$work/segment$index.log" 2>&1 &
    index=$((index + 1))
done <<<"$shards"
wait
log "segmented"
tail -n 2 "$work"/segment*.log
mkdir -p "$work/val-480p"
for shard in "$work"/shard*; do cp -r "$shard"/val-480p/* "$work/val-480p/"; done
tar -C "$work" -cf "$out/results.tar" val-480p shard0/val-240p/config.yaml shard{0,1,2,3}/val-240p/timings.json segment{0,1,2,3}.log
log done
