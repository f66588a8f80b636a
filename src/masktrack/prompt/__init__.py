"""First masks from prompts: a box and/or clicks per object become a label mask (``propose_mask``)."""

from masktrack.prompt.prompts import ObjectPrompt, parse_box, parse_point, prompts_by_frame
from masktrack.prompt.propose import ProposalConfig, propose_mask

__all__ = ["ObjectPrompt", "ProposalConfig", "parse_box", "parse_point", "prompts_by_frame", "propose_mask"]
