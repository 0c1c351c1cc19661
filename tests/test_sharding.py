"""mc_sample over 8 (simulated CPU) devices: the same masks as one device."""

import textwrap

import pytest

from tests.helpers import run_on_cpu_devices

SCRIPT = textwrap.dedent(
  """
    import jax, jax.numpy as jnp, numpy as np
    import jaxuq
    from tests.helpers import mask_fn, mlp_predictive
    assert len(jax.devices()) == 8, jax.devices()
    key = jax.random.key(11)
    x = jnp.arange(3.0)
    for n, chunk in [(16, None), (13, 1), (13, 2), (5, 4), (1, 1)]:
        got = jaxuq.mc_sample(mask_fn, key, x, num_samples=n, chunk_size=chunk)
        want = jaxuq.sequential_sample(mask_fn, key, x, num_samples=n)
        jax.tree.map(np.testing.assert_array_equal, got, want)
        single = jaxuq.mc_sample(mask_fn, key, x, num_samples=n, devices=jax.devices()[:1])
        jax.tree.map(np.testing.assert_array_equal, got, single)
    got = jaxuq.mc_sample(mask_fn, key, x, num_samples=16)
    assert len(got["mask"].sharding.device_set) == 8, got["mask"].sharding
    predict, xs = mlp_predictive(key)
    a = jaxuq.mc_sample(predict, key, xs, num_samples=12, chunk_size=2)
    b = jaxuq.sequential_sample(predict, key, xs, num_samples=12)
    np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-6)
    try:
        jaxuq.mc_sample(mask_fn, jax.random.key(0, impl="philox4x32"), x, num_samples=8)
        raise AssertionError("philox keys on 8 devices must be refused")
    except ValueError as e:
        assert "philox4x32" in str(e)
    try:  # the per-device share of 10**11 samples cannot fit one device
        jaxuq.mc_sample(mask_fn, key, x, num_samples=10**11)
        raise AssertionError("samples that cannot fit must be refused")
    except ValueError as e:
        assert "num_samples=100000000000 cannot fit" in str(e), e
    print("OK")
    """
)


@pytest.mark.slow
def test_eight_devices_match_one_device_and_the_loop():
  run_on_cpu_devices(SCRIPT)


MESH_SCRIPT = textwrap.dedent(
  """
    import jax, jax.numpy as jnp, numpy as np
    import jaxuq
    from tests.helpers import mask_fn, mlp_predictive
    assert len(jax.devices()) == 8, jax.devices()
    key = jax.random.key(5)
    x = jnp.arange(8.0)
    one = jax.devices()[:1]
    predict, xs = mlp_predictive(key, batch=16)
    r = jaxuq.moments_reducer()
    for shards in (1, 2, 4, 8):  # meshes 8x1, 4x2, 2x4, 1x8
        for n, chunk in [(16, None), (13, 2)]:
            got = jaxuq.mc_sample(mask_fn, key, x, num_samples=n, chunk_size=chunk, data_shards=shards)
            want = jaxuq.mc_sample(mask_fn, key, x, num_samples=n, chunk_size=chunk, devices=one)
            jax.tree.map(np.testing.assert_array_equal, got, want)
        got = jaxuq.mc_sample(predict, key, xs, num_samples=12, data_shards=shards)
        if shards > 1:
            assert got.sharding.shard_shape(got.shape)[1] == 16 // shards, got.sharding
        want = jaxuq.mc_sample(predict, key, xs, num_samples=12, devices=one)
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
        red = jaxuq.mc_reduce(predict, key, xs, num_samples=13, chunk_size=2, reducer=r,
                              data_shards=shards)
        alone = jaxuq.mc_reduce(predict, key, xs, num_samples=13, chunk_size=2, reducer=r,
                                devices=one)
        np.testing.assert_allclose(red["mean"], alone["mean"], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(red["var"], alone["var"], rtol=1e-5, atol=1e-7)
    for bad, match in [(3, "data_shards must divide"), (0, "data_shards must be a positive")]:
        try:
            jaxuq.mc_sample(mask_fn, key, x, num_samples=4, data_shards=bad)
            raise AssertionError(bad)
        except ValueError as e:
            assert match in str(e), e
    try:
        jaxuq.mc_sample(mask_fn, key, jnp.arange(6.0), num_samples=4, data_shards=4)
        raise AssertionError("a batch of 6 over 4 data shards must be refused")
    except ValueError as e:
        assert "multiple of 4" in str(e), e
    print("OK")
    """
)


@pytest.mark.slow
def test_samples_by_data_meshes_give_the_masks_of_one_device():
  run_on_cpu_devices(MESH_SCRIPT)


PLACEMENT_SCRIPT = textwrap.dedent(
  """
    import jax, jax.numpy as jnp, numpy as np
    import jaxuq
    from jax.sharding import Mesh
    from tests.helpers import mask_fn
    d = jax.devices()
    key = jax.random.key(3)
    x = jnp.arange(6.0)
    want = jaxuq.sequential_sample(mask_fn, key, x, num_samples=4)
    # devices=[one device] ran on the default device
    got = jaxuq.mc_sample(mask_fn, key, x, num_samples=4, devices=[d[3]])
    assert got["mask"].devices() == {d[3]}, got["mask"].devices()
    jax.tree.map(np.testing.assert_array_equal, got, want)
    red = jaxuq.mc_reduce(mask_fn, key, x, num_samples=4, reducer=jaxuq.moments_reducer(),
                          devices=[d[5]])
    assert red["mean"]["mask"].devices() == {d[5]}
    # inputs and keys committed to other devices than those named: JAX's "incompatible devices"
    far = jax.device_put(x, d[7])
    got = jaxuq.mc_sample(mask_fn, jax.device_put(key, d[6]), far, num_samples=4, devices=d[:4])
    jax.tree.map(np.testing.assert_array_equal, got, want)
    # weights the user sharded over the devices named keep their sharding
    from jax.sharding import NamedSharding, PartitionSpec as P
    m2 = Mesh(np.array(d[:4]).reshape(2, 2), ("u", "v"))
    w = jax.device_put(jnp.ones((4, 6)), NamedSharding(m2, P("u", "v")))
    g = lambda k, x, w: (x[:4] @ w) * jax.random.bernoulli(k, 0.5, (6,))
    from jaxuq._src.mesh import place, sample_mesh
    kept = place(w, d[:4], sample_mesh(d[:4]))
    assert kept.sharding == w.sharding, kept.sharding
    np.testing.assert_allclose(jaxuq.mc_sample(g, key, x, w, num_samples=4, devices=d[:4]),
                               jaxuq.sequential_sample(g, key, x, jnp.ones((4, 6)), num_samples=4))
    # weights on jax.make_mesh's Explicit mesh: devices=[d0] failed ("device assignment 1 is
    # not ... 8"), all devices failed ("Mesh for all inputs should be equal")
    em = jax.make_mesh((8,), ("x",))
    we = jax.device_put(jnp.ones((4, 16)), NamedSharding(em, P(None, "x")))
    h = lambda k, x, w: (x[:4] @ w) * jax.random.bernoulli(k, 0.5, (16,))
    ref = jaxuq.sequential_sample(h, key, x, jnp.ones((4, 16)), num_samples=8)
    for devs in (d[:1], None):
        np.testing.assert_allclose(jaxuq.mc_sample(h, key, x, we, num_samples=8, devices=devs), ref)
    # the same devices in another order are moved, not kept (jit refused the order)
    rev = jax.device_put(jnp.ones((4, 16)), NamedSharding(Mesh(np.array(d[::-1]), ("x",)), P()))
    np.testing.assert_allclose(jaxuq.mc_sample(h, key, x, rev, num_samples=8), ref)
    # with data_shards the batch is split over 'data', not copied whole to every device
    from jaxuq._src.mesh import place, sample_mesh
    xs = place((jnp.ones((8, 4)),), d, sample_mesh(d, 4), batch=True)[0]
    assert xs.sharding.spec == P("data"), xs.sharding
    # a Mesh is not a list of devices: a clear TypeError (was "'Mesh' object is not iterable")
    mesh = Mesh(np.array(d).reshape(4, 2), ("a", "b"))
    for bad in (mesh, mesh.devices):
        try:
            jaxuq.mc_sample(mask_fn, key, x, num_samples=4, devices=bad)
            raise AssertionError("a mesh must be refused")
        except TypeError as e:
            assert "flat list of devices" in str(e), e
    # 12 samples on 8 shards come back whole on each device: the memory check counts them all
    got = jaxuq.mc_sample(mask_fn, key, x, num_samples=12)
    jax.tree.map(np.testing.assert_array_equal, got,
                 jaxuq.sequential_sample(mask_fn, key, x, num_samples=12))
    from jaxuq._src import sampling
    held = []
    real = sampling.check_samples_fit
    sampling.check_samples_fit = lambda *a, **k: held.append(k["per_device"]) or real(*a, **k)
    jax.clear_caches()
    jaxuq.mc_sample(mask_fn, key, x, num_samples=12)
    jaxuq.mc_sample(mask_fn, key, x, num_samples=16)
    sampling.check_samples_fit = real
    assert held == [12, 2], held  # 12 whole on each device; 16 on 8 shards, 2 each
    # auto_chunk_size with data_shards is the chunk mc_sample takes
    f = lambda k, x: x * jax.random.bernoulli(k, 0.5, x.shape)
    xs = jnp.ones((8, 256))
    for shards in (1, 2, 4):
        c = jaxuq.auto_chunk_size(f, key, xs, num_samples=64, memory_budget=2**30,
                                  data_shards=shards)
        assert c == 64 // (8 // shards), (shards, c)
    print("OK")
    """
)


@pytest.mark.slow
def test_named_devices_are_where_the_samples_run():
  run_on_cpu_devices(PLACEMENT_SCRIPT)
