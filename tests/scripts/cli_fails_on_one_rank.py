"""`backprop train` under mpiexec where rank 1 fails (its training raises): the job must end, not hang."""
import sys

from backprop import cli, distribute, run

distribute.init()
if distribute.rank() == 1:
    def broken(*args, **kwargs):
        raise RuntimeError("rank 1 broke")
    run.train = broken
sys.exit(cli.main(["train", "--data", "pass_fail", "--epochs", "200", "--quiet", "--no-plots", "--out", "r"]))
