"""A trial's numbers depend only on (seed, experiment, d, trial index): not on chunks, devices or padding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import run_cell

from jaxfrag import parallel
from jaxfrag.config import Config
from jaxfrag.experiments import TRIAL_GROUP


@pytest.mark.parametrize("name,d", [("thm1", 9), ("thm6", 20)])
def test_rows_do_not_depend_on_chunk_size_or_device_count(name, d, devices):
    config = Config(trials=50, seed=31)
    reference = run_cell(name, d, config, num_devices=1, chunk=50).columns
    for num_devices, chunk in [(1, 16), (2, 50), (2, 18)]:
        other = run_cell(name, d, config, num_devices=num_devices, chunk=chunk).columns
        for column, values in reference.items():
            np.testing.assert_array_equal(
                other[column], values, err_msg=f"{column} with {num_devices} devices, chunk {chunk}"
            )


def test_trial_keys_depend_only_on_identity():
    key = parallel.cell_key(3, "thm6", 12)
    all_at_once = jax.random.key_data(parallel.trial_keys(key, jnp.arange(10)))
    one_by_one = [jax.random.key_data(parallel.trial_keys(key, jnp.asarray([i])))[0] for i in range(10)]
    np.testing.assert_array_equal(all_at_once, np.stack(one_by_one))
    others = [parallel.cell_key(4, "thm6", 12), parallel.cell_key(3, "thm1", 12), parallel.cell_key(3, "thm6", 13)]
    for other in others:
        assert not np.array_equal(jax.random.key_data(other), jax.random.key_data(key))


def test_auto_chunk_gives_every_device_whole_trial_groups_and_fits_memory():
    unit = 2 * TRIAL_GROUP
    assert parallel.auto_chunk(2000, 1000, 2, budget=10**9) == 2000
    assert parallel.auto_chunk(2001, 1000, 2, budget=10**9) == unit * -(-2001 // unit)
    chunk = parallel.auto_chunk(2000, 10**6, 2, budget=10**8)
    assert chunk % unit == 0 and chunk * 10**6 <= 10**8 + unit * 10**6
    assert parallel.auto_chunk(3, 10**9, 2, budget=1) == unit
    assert parallel.round_chunk(17, 1) == 24
