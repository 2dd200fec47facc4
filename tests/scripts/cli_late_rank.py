"""`backprop train` under mpiexec where rank 1 starts late: rank 0 has begun the run (its backup folder made) by
the time rank 1 arrives; rank 1 must not take that for another run's folder."""
import sys
import time

from backprop import cli, distribute

distribute.init()
if distribute.rank() == 1:
    time.sleep(2)
sys.exit(cli.main(["train", "--data", "pass_fail", "--epochs", "2", "--quiet", "--no-plots", "--out", "r"]))
