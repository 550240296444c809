"""Wall time of one search shared by 1, 2 and 4 processes on PostgreSQL, and the storage's round trips per trial.

Starts a throwaway PostgreSQL server (tests/pgserver.py) with pg_stat_statements, builds the probes once
(every process then reads the synthetic set from the shared cache), and for each process count runs
``robustprune search --storage URL`` (the coordinator, which also runs trials) plus N-1
``robustprune worker --storage URL``, each on a fresh database. Round trips are the statements the
server executed (pg_stat_statements calls, BEGIN/COMMIT included) divided by the trials of the search;
a waiting process's poll is measured the same way. The defaults are the full measurement (the default
resnet20 search); give a smaller budget on a busy machine and say so.

    python -m benchmarks.distributed                                  # the full measurement
    python -m benchmarks.distributed --trials 8 --target-macs 0.8     # a smaller, stated budget
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import sqlalchemy

from robustprune import zoo
from robustprune._io import atomic_write_text
from robustprune._provenance import provenance
from robustprune.probes.cache import cached_generate
from robustprune.search.engine import SEARCH_PROBES
from tests import pgserver

ROOT = Path(__file__).resolve().parent.parent


def _sql(url: str, query: str, autocommit: bool = False):
    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT" if autocommit else None)
    try:
        with engine.connect() as connection:
            result = connection.execute(sqlalchemy.text(query))
            rows = result.fetchall() if result.returns_rows else []
            connection.commit() if not autocommit else None
            return rows
    finally:
        engine.dispose()


def _statements(admin: str, database: str) -> int:
    rows = _sql(
        admin,
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
        f"WHERE d.datname = '{database}'",
    )
    return int(rows[0][0])


def _search_args(args: argparse.Namespace) -> list[str]:
    return [
        "--model",
        f"zoo:{args.model}",
        "--target-macs",
        str(args.target_macs),
        "--trials",
        str(args.trials),
        "--n-probes",
        str(args.n_probes),
        "--probe-steps",
        str(args.probe_steps),
        "--seed",
        str(args.seed),
    ]


def run_once(args, admin: str, processes: int, folder: Path, env: dict) -> dict:
    """One search on a fresh database with ``processes`` processes adding trials; its wall time and load."""
    database = f"bench_{processes}_{int(time.time())}"
    _sql(admin, f"CREATE DATABASE {database}", autocommit=True)
    url = sqlalchemy.engine.make_url(admin).set(database=database).render_as_string(hide_password=False)
    _sql(admin, "SELECT pg_stat_statements_reset()")
    out = folder / f"run{processes}"
    command = [sys.executable, "-m", "robustprune", "search", *_search_args(args), "--storage", url]
    command += ["--no-eval", "--quiet", "--overwrite", "--out", str(out)]
    start = time.time()
    logs = [open(folder / f"p{processes}-{i}.log", "w") for i in range(processes)]  # noqa: SIM115
    procs = [subprocess.Popen(command, env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
    worker = [sys.executable, "-m", "robustprune", "worker", "--storage", url, "--quiet"]
    procs += [subprocess.Popen(worker, env=env, stdout=logs[i], stderr=subprocess.STDOUT) for i in range(1, processes)]
    codes = [p.wait() for p in procs]
    seconds = time.time() - start
    for log in logs:
        log.close()
    if any(codes):
        sys.exit(f"a process failed ({codes}); see {folder}/p{processes}-*.log")
    statements = _statements(admin, database)
    studies = [s for s in optuna.get_all_study_names(url) if "-step" in s]
    trials = [t for s in studies for t in optuna.load_study(study_name=s, storage=url).trials]
    history = json.loads((out / "history.json").read_text())
    steps = history["steps"] if isinstance(history, dict) else history
    return {
        "processes": processes,
        "seconds": seconds,
        "steps": len(studies),
        "trials": len(trials),
        "complete": sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials),
        "statements": statements,
        "per_trial": statements / max(len(trials), 1),
        "per_second": statements / seconds,
        "kept_macs": steps[-1]["kept_macs"] if steps else None,
        "fidelity": steps[-1]["proxies"]["fidelity"] if steps else None,
        "url": url,
        "database": database,
    }


def poll_statements(admin: str, run: dict, polls: int = 20) -> float:
    """Statements of one poll of a waiting process (``steps.run_step_trials`` / ``worker._closed``)."""
    from robustprune.search import steps, worker
    from robustprune.search.storage import open_storage

    storage = open_storage(run["url"])
    name = next(s for s in optuna.get_all_study_names(storage) if s.endswith("-step1"))
    base = name.removesuffix("-step1")
    study = optuna.load_study(study_name=name, storage=storage)
    _sql(admin, "SELECT pg_stat_statements_reset()")
    for _ in range(polls):
        worker._closed(storage, base, 1)
        steps.fail_stale(study)
        steps.commit_set(study.get_trials(deepcopy=False), 1)
    return _statements(admin, run["database"]) / polls


def report(args, runs: list[dict], poll: float, command: str) -> str:
    prov = provenance(seed=args.seed)
    base = runs[0]["seconds"]
    lines = [
        "# A search shared by processes: wall time and storage load (PostgreSQL)",
        "",
        f"`{command}` at commit {prov['commit']} on {prov['machine']}, torch {prov['torch']}, seed {args.seed}.",
        f"Search: zoo:{args.model} to {args.target_macs:g} of the MACs, {args.trials} trials per step, probes "
        f"{args.n_probes} x {args.probe_steps} steps (built once before the runs; each process reads the cache). "
        "N processes = the coordinator (`robustprune search --storage URL`, which runs trials too) and N-1 "
        "`robustprune worker`s, all on this machine, each run on a fresh database of a local PostgreSQL 15. "
        f"Each process runs torch with {args.threads} thread(s) (OMP_NUM_THREADS).",
        "",
        args.note,
        "",
        "| processes | wall time (s) | speed-up | steps | trials (complete) | statements | per trial | per second |"
        " final kept MACs | final fidelity |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['processes']} | {r['seconds']:.0f} | {base / r['seconds']:.2f}x | {r['steps']} | {r['trials']} "
            f"({r['complete']}) | {r['statements']} | {r['per_trial']:.0f} | {r['per_second']:.1f} | "
            f"{100 * r['kept_macs']:.1f}% | {r['fidelity']:.3f} |"
        )
    per_trial = sum(r["statements"] for r in runs) / sum(r["trials"] for r in runs)
    trial_seconds = base / max(runs[0]["trials"], 1)
    lines += [
        "",
        "Wall time is the coordinator's process from start to exit (Python and torch start-up, probe loading, "
        "the criterion choice and every step). Statements are all the server executed for the run's database "
        "(pg_stat_statements), the polls of waiting processes included; the trials of a step beyond its budget "
        "(processes that started one as the last slot filled) are counted in the trials. "
        f"One poll of a waiting process (step closed?, stale trials, the step's trials): {poll:.1f} statements.",
        "",
        "## Scale-out to 100 workers, on paper",
        "",
        f"From the runs above: about {per_trial:.0f} statements per trial, {poll:.1f} per poll (a waiting "
        f"process polls every {args.poll:g} s), and {trial_seconds:.1f} s of one process per trial here "
        "(the 1-process wall time over its trials).",
        "",
        f"- **Trials per step.** A step's budget is {args.trials} trials, so at most {args.trials} processes "
        f"run at once; with 100 workers, {100 - args.trials} wait for the next step. A step then takes "
        "one trial's time plus the commit and the re-ranking, which only the coordinator runs, "
        "so the search's speed-up saturates at about the budget (fewer with the serial start-up and per-step "
        "work). More workers pay off only with a larger `--trials`, which also changes what the search commits.",
        f"- **Storage load.** 100 processes polling: 100 x {poll:.1f} / {args.poll:g} s = "
        f"{100 * poll / args.poll:.0f} statements/s; the trials themselves: {args.trials} trials per step of "
        f"{trial_seconds:.1f} s x {per_trial:.0f} statements = "
        f"{args.trials * per_trial / max(trial_seconds, 1e-9):.0f} statements/s. A single PostgreSQL "
        "server executes these small indexed statements at thousands to tens of thousands per second, so "
        "the database is not the bottleneck at 100 workers; the connections are (each process holds a "
        "SQLAlchemy pool: set max_connections >= 2 x workers, or put PgBouncer in front).",
        "- **Where it saturates.** First at the step budget (above); then, for big models whose trials take "
        "seconds, nowhere in the storage. The journal file storage instead rereads a growing log under a file "
        "lock, and its heartbeats add a log line per running trial per interval: fine for a few machines on "
        "a shared file system, not for 100.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--target-macs", type=float, default=0.5)
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--n-probes", type=int, default=SEARCH_PROBES.synthetic.n)
    parser.add_argument("--probe-steps", type=int, default=SEARCH_PROBES.synthetic.steps)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each process (1: one core each)")
    parser.add_argument("--note", default="", help="a line for the report (e.g. the machine was busy)")
    parser.add_argument("--out", default=str(ROOT / "results" / "distributed.md"))
    args = parser.parse_args(argv)
    from robustprune.search.steps import POLL_SECONDS

    args.poll = POLL_SECONDS
    command = "python -m benchmarks.distributed " + " ".join(argv if argv is not None else sys.argv[1:])
    folder = Path(tempfile.mkdtemp(prefix="robustprune-bench-"))
    os.chmod(folder, 0o755)
    pg = folder / "pg"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ROBUSTPRUNE_CACHE_DIR": str(folder / "cache")}
    env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))  # read by torch at start
    try:
        admin = pgserver.start(pg, options="-c shared_preload_libraries=pg_stat_statements")
        _sql(admin, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements", autocommit=True)
        synthetic = dataclasses.replace(SEARCH_PROBES.synthetic, n=args.n_probes, steps=args.probe_steps)
        model, spec = zoo.load(args.model)  # the synthetic set every process then reads from the cache
        cached_generate(model, spec, dataclasses.replace(synthetic, seed=args.seed), cache_dir=folder / "cache")
        runs = []
        for n in args.processes:
            runs.append(run_once(args, admin, n, folder, env))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "url"}), flush=True)
        poll = poll_statements(admin, runs[-1])
        text = report(args, runs, poll, command)
        atomic_write_text(Path(args.out), text)
        print(text)
    finally:
        pgserver.stop(pg)


if __name__ == "__main__":
    main()
