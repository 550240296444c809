"""Provenance names the machine well enough to tell two hosts that round differently apart."""

import subprocess
import sys

import torch

from robustprune._provenance import cpu_name, machine


def test_machine_names_the_processor_and_the_vector_instructions_torch_uses():
    text = machine()
    assert f"({torch.backends.cpu.get_cpu_capability()})" in text and f"{torch.get_num_threads()} torch threads" in text


def test_cpu_name_reads_the_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9654 96-Core Processor\n")
    assert cpu_name(str(info)) == "AMD EPYC 9654 96-Core Processor"
    assert cpu_name(str(tmp_path / "missing"))  # no /proc: still a name (the platform's)


def test_a_pinned_commit_is_reported_after_a_commit_made_mid_run(monkeypatch):
    from robustprune import _provenance

    monkeypatch.setenv(_provenance.PINNED_COMMIT_ENV, "")  # undone after the test: the pin does not leak
    monkeypatch.setattr(_provenance, "git_commit", lambda: "a" * 40)
    assert _provenance.pin_commit() == "a" * 40
    monkeypatch.setattr(_provenance, "git_commit", lambda: "b" * 40)  # someone commits while the run goes on
    assert _provenance.provenance()["commit"] == "a" * 40
    worker = subprocess.run(  # a worker process the run starts inherits the pin
        [sys.executable, "-c", "from robustprune._provenance import provenance; print(provenance()['commit'])"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert worker.stdout.strip() == "a" * 40
