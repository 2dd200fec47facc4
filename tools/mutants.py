"""Mutation testing for the functions that mutmut 3 leaves out.

mutmut 3 (``mutmut run``, configured in pyproject.toml) swaps mutants in through a trampoline on each
function, so it skips decorated functions (every ``@differentiable`` op, every property) and never reaches
code that runs at import time (the loss ops built by ``mean_op``/``per_example_op``, ``_extreme``). This
script takes mutmut's own mutation operators to those functions, writes each mutant into a copy of the
tree (as committed) and runs the given tests on it in a fresh interpreter:

    python tools/mutants.py backprop/ops/nn.py --tests tests/test_gradients.py
    python tools/mutants.py backprop/ops/loss_kernels.py --functions mean_op,per_example_op \\
        --tests tests/test_losses_metrics.py --jobs 2
    python tools/mutants.py backprop/ops/nn.py --tests ... --survivors-of nn.json   # after adding tests
    python tools/mutants.py backprop/ops/op.py --functions differentiable --matching name --tests ...

A mutant is killed when the tests fail (or time out), survives when they pass. Survivors are printed as
one-line diffs and all results are written as JSON (``--out``). Needs ``pip install mutmut``.
"""
import argparse
import concurrent.futures
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import libcst as cst
from libcst.metadata import MetadataWrapper
from mutmut.mutation import file_mutation
from mutmut.mutation.mutators import mutation_operators
from mutmut.mutation.pragma_handling import get_ignored_lines

ROOT = Path(__file__).resolve().parent.parent


class _EveryFunction(file_mutation.MutationVisitor):
    """mutmut's visitor, without its rule that skips decorated functions (decorators themselves stay)."""

    def _skip_node_and_children(self, node):
        if isinstance(node, cst.FunctionDef) and node.decorators:
            return False
        return super()._skip_node_and_children(node)


def _is_decorated(function):
    names = [getattr(d.decorator, "value", None) for d in function.decorators]
    return bool(names) and names != ["staticmethod"] and names != ["classmethod"]


def mutants(path, functions=None):
    """(function name, mutated source) for every mutation in the chosen functions: those named, or by
    default the decorated ones mutmut 3 skips. ``path`` is relative to the repository root."""
    code = committed(path)
    module = cst.parse_module(code)
    wrapper = MetadataWrapper(module)
    visitor = _EveryFunction(mutation_operators, get_ignored_lines(path, code, wrapper, None))
    wrapper.visit(visitor)
    for mutation in visitor.mutations:
        function = mutation.contained_by_top_level_function
        if not isinstance(function, cst.FunctionDef):
            continue
        name = function.name.value
        if (name in functions) if functions else _is_decorated(function):
            mutated = file_mutation.deep_replace(wrapper.module, mutation.original_node, mutation.mutated_node)
            yield name, mutated.code


def one_line_diff(before, after):
    changed = [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    return " | ".join(line.strip() for line in changed)


def committed(path):
    """A file as the last commit has it: the run tests what is committed, whatever is being edited meanwhile."""
    return subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout


def copy_tree(destination):
    """The committed tree (``git archive HEAD``), unpacked into ``destination``."""
    destination.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)


def run_tests(tree, tests, timeout):
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *tests]
    try:
        return subprocess.run(command, cwd=tree, env=env, capture_output=True, timeout=timeout, check=False).returncode
    except subprocess.TimeoutExpired:
        return "timeout"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", help="the file to mutate, relative to the repository root")
    parser.add_argument("--functions", help="comma-separated top-level functions or methods (default: decorated ones)")
    parser.add_argument("--tests", nargs="+", required=True, help="test files or node ids to run on each mutant")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="mutants.json")
    parser.add_argument("--survivors-of", help="an earlier --out file: run again only the mutants that survived it")
    parser.add_argument("--matching", help="run only the mutants whose one-line diff matches this regular expression")
    args = parser.parse_args()
    functions = set(args.functions.split(",")) if args.functions else None
    original = committed(args.source)
    found = list(mutants(args.source, functions))
    if args.survivors_of:
        survived = {(r["function"], r["diff"]) for r in json.loads(Path(args.survivors_of).read_text()) if not r["killed"]}
        found = [(name, code) for name, code in found if (name, one_line_diff(original, code)) in survived]
    if args.matching:
        found = [(name, code) for name, code in found if re.search(args.matching, one_line_diff(original, code))]
    print(f"{len(found)} mutants in {args.source}", flush=True)

    with tempfile.TemporaryDirectory() as scratch:
        trees = [Path(scratch) / f"tree{i}" for i in range(args.jobs)]
        for tree in trees:
            copy_tree(tree)
        start = time.perf_counter()
        if run_tests(trees[0], args.tests, timeout=900) != 0:
            sys.exit("the tests fail on the unmutated tree")
        timeout = 3 * (time.perf_counter() - start) + 10
        free = list(trees)
        results = []

        def run_one(item):
            name, code = item
            tree = free.pop()
            try:
                (tree / args.source).write_text(code)
                outcome = run_tests(tree, args.tests, timeout)
            finally:
                (tree / args.source).write_text(original)
                free.append(tree)
            return {"function": name, "killed": outcome != 0, "outcome": str(outcome),
                    "diff": one_line_diff(original, code)}

        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for done, result in enumerate(pool.map(run_one, found), 1):
                results.append(result)
                if not result["killed"]:
                    print(f"survived  {result['function']}: {result['diff']}", flush=True)
                if done % 25 == 0:
                    print(f"... {done}/{len(found)}", flush=True)

    killed = sum(r["killed"] for r in results)
    print(f"{args.source}: {len(results)} mutants, {killed} killed, {len(results) - killed} survived")
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
