"""pyrobn.datasets.book_digits / digits(split="book"): the benchmark split of notes 2.2.2."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

import pyrobn
from pyrobn.datasets.digits_benchmark import book_digits, requantize
from pyrobn.errors import ConfigurationError


def test_the_split_is_the_books_positional_split(device):
    data = pyrobn.datasets.digits(split="book", levels=17, device=device)
    raw = load_digits()
    sizes = [t.shape[0] for t in data]
    assert sizes == [1000, 1000, 350, 350, 447, 447]
    assert all(t.dtype == torch.long and t.device.type == device.type for t in data)
    x = torch.cat([data.x_train, data.x_val, data.x_test]).cpu().numpy()
    y = torch.cat([data.y_train, data.y_val, data.y_test]).cpu().numpy()
    np.testing.assert_array_equal(x, raw.data.astype(np.int64))  # original order, every image
    np.testing.assert_array_equal(y, raw.target)
    assert int(data.x_train.min()) == 0 and int(data.x_train.max()) == 16
    assert data.x_test.shape == (447, 64)


@pytest.mark.parametrize("levels", [2, 5, 17])
def test_requantized_levels_cover_the_range_and_keep_the_order(levels):
    data = book_digits(levels, device="cpu")
    x = data.x_train
    assert int(x.min()) == 0 and int(x.max()) == levels - 1
    raw = torch.as_tensor(load_digits().data[:1000], dtype=torch.long)
    # monotone: a brighter raw pixel never gets a lower level
    order = raw.flatten().argsort()
    assert bool((x.flatten()[order].diff() >= 0).all())
    assert torch.equal(torch.as_tensor(requantize(raw.numpy(), levels)), x)


def test_two_levels_threshold_at_the_middle():
    v = np.arange(17)
    np.testing.assert_array_equal(requantize(v, 2), (v >= 9).astype(np.int64))


@settings(max_examples=25, deadline=None)
@given(st.one_of(st.integers(-5, 1), st.integers(18, 100), st.floats(2.5, 3.5), st.booleans()))
def test_bad_levels_raise(levels):
    with pytest.raises(ConfigurationError, match="levels"):
        book_digits(levels)


def test_bad_split_arguments_raise():
    with pytest.raises(ConfigurationError, match="split"):
        pyrobn.datasets.digits(split="random")
    with pytest.raises(ConfigurationError, match="levels"):
        pyrobn.datasets.digits(levels=17)
    with pytest.raises(ConfigurationError, match="binarize"):
        pyrobn.datasets.digits(split="book", binarize=True)


def test_the_default_digits_are_unchanged():
    x_train, _, x_test, _ = pyrobn.datasets.digits(device="cpu")
    assert x_train.shape == (1437, 64) and x_test.shape == (360, 64)


def test_the_function_stays_reachable_after_the_split_is_loaded():
    pyrobn.datasets.digits(split="book")  # imports the module that defines book_digits
    assert callable(pyrobn.datasets.book_digits)
    assert pyrobn.datasets.book_digits(2, device="cpu").x_train.max() == 1
