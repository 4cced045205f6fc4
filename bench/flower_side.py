"""Flower's side of ``flower_side_by_side.py``: one run of Flower's simulation engine, timed, written as JSON.

Run by the Flower venv's python (``bench/flower_venv.sh`` makes it), never the project's: it imports flwr, torch and
``bench_models`` (torch only), nothing of resontech_nb. The same shapes as our side: the same model class
(``BenchNet``, or ``ScaledNet`` of ``--millions`` million parameters), the same trivial update (add 0.01 to every
weight, 10 samples, applied to the global state_dict as tensors: no model built in a round, as our site does
for a custom training function), every site in every round, no evaluation, FedAvg.

Flower's legacy strategy API in a ``ServerApp`` (``ServerAppComponents``) and a ``NumPyClient`` in a ``ClientApp``,
run by ``flwr.simulation.run_simulation`` (Ray backend, ``--cpus-per-client`` CPUs per client: 1 lets two clients
run at once on 2 cores; Flower's default is 2). A ``FedAvg`` subclass stamps each round's start (``configure_fit``)
and end (``aggregate_fit``) with ``time.time()``, as our server's round records do.

    /tmp/flwr-venv/bin/python bench/flower_side.py --rounds 15 --sites 2 [--millions 45] --out FILE
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROCESS_START = time.time()  # before the imports below: the bench also times them


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--sites", type=int, default=2)
    parser.add_argument("--millions", type=float, default=0.0, help="ScaledNet of this size; 0: BenchNet (2 k)")
    parser.add_argument("--cpus-per-client", type=float, default=1.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        # Ray's workers unpickle the client app and import bench_models (and the scaled model's module) by name
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), tmp, os.environ.get("PYTHONPATH")) if p)
        sys.path[:0] = [str(HERE), tmp]
        result = run(args, Path(tmp))
    args.out.write_text(json.dumps(result, indent=2))


def run(args: argparse.Namespace, tmp: Path) -> dict:
    import bench_models
    import flwr
    import numpy as np
    import torch
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    logging.getLogger("flwr").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    net = bench_models.scaled_net_module(args.millions, tmp).ScaledNet if args.millions else bench_models.BenchNet
    model = net()
    keys = list(model.state_dict())
    initial = [v.numpy() for v in model.state_dict().values()]
    params = sum(a.size for a in initial)
    stamps: dict[int, dict[str, float]] = {}

    class StampedFedAvg(FedAvg):
        def configure_fit(self, server_round, parameters, client_manager):  # noqa: ANN001, ANN202
            stamps.setdefault(server_round, {})["started_at"] = time.time()
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round, results, failures):  # noqa: ANN001, ANN202
            out = super().aggregate_fit(server_round, results, failures)
            stamps[server_round]["finished_at"] = time.time()
            stamps[server_round]["results"] = len(results)
            stamps[server_round]["failures"] = len(failures)
            return out

    class BenchClient(NumPyClient):
        def fit(self, parameters, config):  # noqa: ANN001, ANN202
            # as our site gives a custom training function the global weights: a state_dict of tensors (here
            # sharing the arrays' memory), no model built in the round
            weights = {k: torch.from_numpy(np.asarray(v)) for k, v in zip(keys, parameters, strict=True)}
            out = bench_models.bench_train({"initial_weights": weights})
            return [v.numpy() for v in out["weights"].values()], out["samples"], {"loss": 1.0}

    def client_fn(context: Context):  # noqa: ANN202
        return BenchClient().to_client()

    def server_fn(context: Context) -> ServerAppComponents:
        strategy = StampedFedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=args.sites,
            min_evaluate_clients=0,
            min_available_clients=args.sites,
            initial_parameters=ndarrays_to_parameters(initial),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=args.rounds))

    backend = {"client_resources": {"num_cpus": args.cpus_per_client, "num_gpus": 0.0}}
    called = time.time()
    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=args.sites,
        backend_config=backend,
    )
    returned = time.time()
    rounds = [{"round": n, **stamps[n]} for n in sorted(stamps)]
    complete = [r for r in rounds if r.get("results") == args.sites and not r.get("failures")]
    return {
        "side": "flower",
        "flwr": flwr.__version__,
        "torch": torch.__version__,
        "params": int(params),
        "sites": args.sites,
        "rounds_asked": args.rounds,
        "rounds_complete": len(complete),
        "backend_config": backend,
        "process_start": PROCESS_START,
        "called_at": called,  # just before run_simulation: flwr and torch imported, as a notebook's would be
        "returned_at": returned,
        "rounds": rounds,
    }


if __name__ == "__main__":
    main()
