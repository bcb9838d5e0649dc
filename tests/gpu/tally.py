"""tally.py - what the GPU checks written in Python share: 'not ok' lines, the closing
'N passed, N failed' that tests/gpu/run.sh adds up, and bitwise tensor equality."""
import re
import sys

import torch

_count = {"passed": 0, "failed": 0}


def check(ok, what):
    if ok:
        _count["passed"] += 1
    else:
        _count["failed"] += 1
        print(f"not ok - {what}", flush=True)


def expect(exc, pattern, what, f):
    """f() must raise exc with a message matching pattern."""
    try:
        f()
    except exc as e:
        check(re.search(pattern, str(e)) is not None, f"{what}: message {str(e)!r} lacks {pattern!r}")
        return
    except Exception as e:  # noqa: BLE001 (any other exception is the failure being reported)
        check(False, f"{what}: raised {type(e).__name__}: {e}")
        return
    check(False, f"{what}: nothing raised")


def same(a, b):
    """Same dtype, shape and bytes."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def done():
    print(f"{_count['passed']} passed, {_count['failed']} failed")
    sys.exit(1 if _count["failed"] else 0)
