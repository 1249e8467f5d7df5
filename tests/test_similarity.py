"""Linear CKA (Kornblith et al. 2019): the properties the paper proves, and agreement with
the HSIC definition computed with explicit loops."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ortho_group

from trainables.similarity import cka_matrix, linear_cka, normalized_centered_gram


def _hsic_by_loops(k: np.ndarray, l: np.ndarray) -> float:  # noqa: E741 - the paper's L
    """``tr(K H L H) / (n - 1)^2`` with ``H = I - 11^T / n`` built and multiplied entry by entry."""
    n = len(k)
    h = [[(1.0 if i == j else 0.0) - 1.0 / n for j in range(n)] for i in range(n)]

    def product(a, b):
        return [[sum(a[i][m] * b[m][j] for m in range(n)) for j in range(n)] for i in range(n)]

    khlh = product(product(product(k.tolist(), h), l.tolist()), h)
    return sum(khlh[i][i] for i in range(n)) / (n - 1) ** 2


def _cka_by_loops(x: np.ndarray, y: np.ndarray) -> float:
    """CKA from its definition: linear kernels ``K = X X^T``, ``L = Y Y^T`` as sums of products."""
    def gram(z):
        return np.array([[sum(a * b for a, b in zip(z[i], z[j])) for j in range(len(z))] for i in range(len(z))])

    k, l = gram(x.tolist()), gram(y.tolist())  # noqa: E741
    return _hsic_by_loops(k, l) / np.sqrt(_hsic_by_loops(k, k) * _hsic_by_loops(l, l))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_linear_cka_equals_the_hsic_definition_computed_with_loops(rng):
    for n, p1, p2 in [(7, 3, 5), (9, 12, 4), (6, 2, 2)]:  # narrower and wider than n
        x = rng.standard_normal((n, p1))
        y = x[:, :1] @ rng.standard_normal((1, p2)) + rng.standard_normal((n, p2))  # partly shared
        assert linear_cka(x, y) == pytest.approx(_cka_by_loops(x, y), rel=1e-10)
        assert linear_cka(y, x) == pytest.approx(linear_cka(x, y), rel=1e-12)


def test_a_representation_is_identical_to_itself_and_independent_noise_is_far(rng):
    x = rng.standard_normal((50, 8))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    # Independent representations of 500 samples: CKA near 0, far below 1.
    a, b = rng.standard_normal((500, 4)), rng.standard_normal((500, 4))
    assert 0.0 <= linear_cka(a, b) < 0.05


def test_invariant_to_orthogonal_transforms_and_isotropic_scaling_of_either_side(rng):
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((30, 4))
    y = y + x[:, :4]
    base = linear_cka(x, y)
    q6, q4 = ortho_group.rvs(6, random_state=1), ortho_group.rvs(4, random_state=2)
    assert linear_cka(x @ q6, y) == pytest.approx(base, rel=1e-10)
    assert linear_cka(x, y @ q4) == pytest.approx(base, rel=1e-10)
    assert linear_cka(17.0 * x, 0.03 * y) == pytest.approx(base, rel=1e-10)
    # A translation is removed by the centring.
    assert linear_cka(x + 5.0, y - 2.0) == pytest.approx(base, rel=1e-10)


def test_not_invariant_to_a_general_invertible_linear_map(rng):
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 5))
    y = y + x
    stretch = np.diag([1.0, 1.0, 1.0, 1.0, 50.0]) @ ortho_group.rvs(5, random_state=3)
    assert np.linalg.matrix_rank(stretch) == 5
    # An anisotropic stretch reweights the directions: CKA moves (Kornblith et al. Sec. 2.1).
    assert abs(linear_cka(x @ stretch, y) - linear_cka(x, y)) > 0.05
    # Against itself after the map: no longer identical.
    assert linear_cka(x @ stretch, x) < 0.9


def test_invariant_to_sample_order_and_to_float32(rng):
    x, y = rng.standard_normal((25, 6)), rng.standard_normal((25, 3))
    y[:, 0] += x[:, 0]
    order = rng.permutation(25)
    assert linear_cka(x[order], y[order]) == pytest.approx(linear_cka(x, y), rel=1e-10)
    # The same permutation on one side only breaks the pairing.
    assert abs(linear_cka(x[order], y) - linear_cka(x, y)) > 1e-3
    assert linear_cka(x.astype(np.float32), y.astype(np.float32)) == pytest.approx(linear_cka(x, y), rel=1e-5)


def test_the_layer_matrix_is_the_pairwise_cka_of_its_layers(rng):
    layers_a = [rng.standard_normal((12, p)) for p in (3, 20)]
    layers_b = [layers_a[0] @ rng.standard_normal((3, 7)), rng.standard_normal((12, 5)), layers_a[1]]
    matrix = cka_matrix([normalized_centered_gram(x) for x in layers_a], [normalized_centered_gram(y) for y in layers_b])
    assert matrix.shape == (2, 3)
    for i, x in enumerate(layers_a):
        for j, y in enumerate(layers_b):
            assert matrix[i, j] == pytest.approx(_cka_by_loops(x, y), rel=1e-10)
    assert matrix[1, 2] == pytest.approx(1.0)


def test_refuses_what_has_no_cka():
    with pytest.raises(ValueError, match="constant"):
        normalized_centered_gram(np.ones((5, 3)))
    with pytest.raises(ValueError, match="same n"):
        linear_cka(np.zeros((4, 2)), np.zeros((5, 2)))
