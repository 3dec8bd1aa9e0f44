"""The test configuration forces Triton's interpreter only where no GPU is present."""

import os

import conftest
import torch


def test_interpreter_only_without_a_gpu():
    assert conftest._cuda_present() == torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert os.environ.get("TRITON_INTERPRET") == "1"
