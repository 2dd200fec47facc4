"""Datasets: the lecture's toys, bundled real data, readers for the user's own files, and helpers."""
from backprop.datasets import mnist
from backprop.datasets.bundled import digits, mnist_sample
from backprop.datasets.csv_reader import DataError, Table, load_csv
from backprop.datasets.idx import load_idx, read_idx, write_idx
from backprop.datasets.preprocessing import Scaler, iterate_batches, min_max_scale, standardize, train_test_split
from backprop.datasets.toys import blobs, circles, moons, pass_fail, spirals, xor

TOYS = {"pass_fail": pass_fail, "moons": moons, "circles": circles, "spirals": spirals, "xor": xor, "blobs": blobs}
BUNDLED = {"digits": digits, "mnist": mnist_sample}
NAMES = list(BUNDLED) + list(TOYS)
