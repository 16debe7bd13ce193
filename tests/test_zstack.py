import numpy as np
import pytest
from scipy import ndimage

from lightmycells.engine import zstack


@pytest.fixture
def stack():
    sharp = np.random.default_rng(0).gamma(2.0, 200.0, (64, 64)) + 500
    sigmas = [4, 2, 0, 1.5, 3]  # plane 2 is in focus
    return np.stack([ndimage.gaussian_filter(sharp, s) if s else sharp for s in sigmas]
                    ).astype(np.uint16)


def test_best_plane_is_the_sharpest(stack):
    assert zstack.best_plane(stack) == 2
    np.testing.assert_array_equal(zstack.reduce(stack, "best"), stack[2])


def test_a_brighter_blurred_plane_does_not_win(stack):
    brighter = stack.astype(np.float32)
    brighter[0] *= 3  # a brighter but blurred plane must not win
    assert zstack.best_plane(brighter) == 2


def test_mip_and_2d_and_bad_mode(stack):
    np.testing.assert_array_equal(zstack.reduce(stack, "mip"), stack.max(axis=0))
    np.testing.assert_array_equal(zstack.reduce(stack[0], "best"), stack[0])
    with pytest.raises(ValueError, match="'all'"):
        zstack.reduce(stack, "all")
    assert zstack.best_plane(np.zeros((3, 8, 8), np.uint16)) == 0


def test_one_z_stack_vocabulary_for_the_command_line_and_the_reduction():
    from lightmycells.run import cli

    z = zstack.ZStack
    assert set(cli.ZSTACK_CHOICES) == set(zstack.INFERENCE) == {"best", "mip", "all"}
    assert set(zstack.REDUCTIONS) == set(zstack.INFERENCE) - {z.ALL}
    assert set(zstack.TRAINED) == {"plane", "mip", "best"}
    # every way a model can have been trained maps to a reduction the container applies
    assert set(zstack.REDUCTION) == set(zstack.TRAINED)
    assert set(zstack.REDUCTION.values()) <= set(zstack.REDUCTIONS)
