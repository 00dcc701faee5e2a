"""Runs at the start of every Python process that has this directory on PYTHONPATH (`make test`
puts it there): with RELAY_RECORD_AWS_CALLS set, that process records the AWS calls the
repository's code makes (tests/iam/recorder.py), also in the child processes the e2e tests start.
Without it, this does nothing."""

import os

if os.environ.get("RELAY_RECORD_AWS_CALLS"):
    import importlib.util
    import sys
    from pathlib import Path

    _path = Path(__file__).resolve().parent.parent / "recorder.py"
    # By file path: at interpreter start the repository may not be on sys.path yet.
    _spec = importlib.util.spec_from_file_location("_relay_aws_call_recorder", _path)
    if _spec is not None and _spec.loader is not None:
        _module = importlib.util.module_from_spec(_spec)
        sys.modules[_spec.name] = _module  # dataclasses look their module up there
        _spec.loader.exec_module(_module)
        _module.record_every_session(Path(os.environ["RELAY_RECORD_AWS_CALLS"]))
