"""Building a job: the NVFlare job folder (meta.json, app configs, ``custom/``) from a ModelSpec and the configs."""
