"""Client API script of the hand-written NVFlare job: the same update as bench_models.bench_train."""

import nvflare.client as flare
from nvflare.app_common.abstract.fl_model import FLModel

flare.init()
while flare.is_running():
    incoming = flare.receive()
    params = {k: v + 0.01 for k, v in incoming.params.items()}
    flare.send(FLModel(params=params, metrics={"loss": 1.0}, meta={"NUM_STEPS_CURRENT_ROUND": 10}))
