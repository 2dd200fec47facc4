import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


def available_devices():
    """The devices the suite runs on: the CPU and the strict checking device always, the GPU when CuPy sees one."""
    import backprop as bp
    names = ["cpu", "strict"]
    try:
        bp.devices.get("gpu")
        names.append("gpu")
    except bp.devices.DeviceError:
        pass
    return names


DEVICES = available_devices()


@pytest.fixture(params=DEVICES)
def each_device(request):
    """Run the test with tensors and models made on each device (``pytestmark = usefixtures("each_device")``)."""
    import backprop as bp
    with bp.device(request.param) as device:
        yield device


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.slow) if name != "cpu" else name for name in DEVICES])
def each_device_slow(request):
    """As each_device, with the other devices' runs behind the ``slow`` marker (longer training tests)."""
    import backprop as bp
    with bp.device(request.param) as device:
        yield device
