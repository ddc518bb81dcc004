"""bc.machine: what a results row records of the machine that trained it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from bc.machine import cpu_name, training_machine


def test_the_machine_names_the_cpu_and_torch():
    machine = training_machine()
    assert machine["cpu"] == cpu_name() and machine["cpu"]
    assert machine["torch"] == str(torch.__version__)


def test_the_kernels_are_those_torch_dispatches_to_not_a_cpu_flag():
    # ATEN_CPU_CAPABILITY caps the kernels torch picks; the record must follow the cap
    script = "import json, bc.machine as m; print(json.dumps(m.training_machine()))"
    environment = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    capped = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True
    )
    assert json.loads(capped.stdout)["kernels"] == "DEFAULT"
