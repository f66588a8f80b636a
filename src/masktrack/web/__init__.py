"""`masktrack app`: a local web page to prompt objects, segment a video, correct frames and export the masks.

``server.create_app(workspace)`` builds the Starlette application; ``state.Workspace`` holds the one open video,
its prompts, the last run's masks and the running job.
"""
