"""Times the data layer: IDX loading, font discovery, glyph rendering (glyphs/s).

Run from the checkout after `make data`: `python benchmarks/data_loading.py`.
"""

import time

import jax

from jaxuq.data import default_data_dir, find_fonts, load_dataset, render_letters


def timed(label, fn):
  start = time.perf_counter()
  out = fn()
  print(f"{label}: {time.perf_counter() - start:.2f} s")
  return out


def main():
  data_dir = default_data_dir()
  for name in ("mnist", "fashion_mnist"):
    for split in ("train", "test"):
      ds = timed(
        f"load {name} {split}", lambda n=name, s=split: load_dataset(n, s, data_dir=data_dir)
      )
      print(f"  {ds.images.shape} from {ds.source}")
  found = timed("find_fonts", lambda: find_fonts(data_dir))
  print("  " + ", ".join(f"{k}: {len(v)}" for k, v in found.items()))
  fonts = [f for files in found.values() for f in files]
  render_letters(jax.random.key(0), fonts[:1], letters="A")  # compile the key draws
  start = time.perf_counter()
  out = render_letters(jax.random.key(1), fonts)
  seconds = time.perf_counter() - start
  print(
    f"render_letters: {len(out.labels)} glyphs in {seconds:.2f} s = {len(out.labels) / seconds:.0f} glyphs/s"
  )
  only_mpl = found["matplotlib"]
  print(
    f"matplotlib fonts alone: {len(only_mpl)} fonts x 52 = {len(only_mpl) * 52} glyphs per variant"
  )


if __name__ == "__main__":
  main()
