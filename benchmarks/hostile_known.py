"""The hostile inputs of each class privbench guards against by design, for ``hostile_sweep.py --known``.

One case per input that once broke the promise: outputs on inputs, resource bombs, text that is not
UTF-8, fields of the wrong type, empty data, odd names. ``hostile_sweep.py`` runs them with the
same checks as its own cases.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from hostile_sweep import FAST, Case, audit, npz, png_folder, release, suite

LATIN1 = "name = 'caf\xe9'\n".encode("latin-1")


def _huge_header(path: Path, key: str = "train_images") -> Path:
    """An npz whose ``key`` declares 10**15 bytes in a header of a few dozen."""
    npz(path)
    arrays = dict(np.load(path))
    arrays.pop(key)
    np.savez(path, **arrays)
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (1000000000, 1000, 1000), }"
    header += " " * (63 - len(header) % 64) + "\n"
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(f"{key}.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    return path


def _png_bomb(path: Path) -> Path:
    """A valid tiny PNG whose header says 20,000 x 20,000 pixels."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29])
    ihdr[4:12] = struct.pack(">II", 20000, 20000)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def _manifest(work: Path, **fields) -> Path:
    rel = release(work / "r")
    manifest = {"method": "random", "ipc": 1, **fields}
    (rel / "release.json").write_text(json.dumps(manifest))
    return rel


def _registry(work: Path, card: str) -> dict[str, str]:
    (work / "reg" / "datasets").mkdir(parents=True, exist_ok=True)
    (work / "reg" / "suites").mkdir(exist_ok=True)
    (work / "reg" / "datasets" / "bad.toml").write_bytes(card.encode() if isinstance(card, str) else card)
    return {"PRIVBENCH_REGISTRY": str(work / "reg")}


def _suite_case(name: str, body: str) -> Case:
    return Case(f"suite: {name}", lambda w: ["run", str(suite(w / "s.toml", body)), "--out", "o", "-q"])


def _card_case(name: str, card: str | bytes) -> Case:
    return Case(f"card: {name}", lambda w: ["datasets"], env=lambda w: _registry(w, card))


SUITE = 'name = "s"\ndatasets = ["digits"]\n[[releases]]\nmethod = "original"\n'
CARD = 'name = "bad"\ntitle = "t"\nloader = "digits"\nclasses = ["a", "b"]\n'


def known_cases() -> list[Case]:
    return [
        Case("distill --out on the folder dataset it reads, --force",
             lambda w: ["distill", "--data", f"folder:{png_folder(w / 'f')}", "--out", "f", "--force", *FAST]),
        Case("audit --out on the release it audits, --force",
             lambda w: ["audit", "--data", "digits", "--release", str(release(w / "r")), "--out", "r", "--force",
                        "--attack", "aia"]),
        Case("metrics --out on its reference, --force",
             lambda w: np.savez(w / "a.npz", images=np.zeros((3, 8, 8), np.uint8)) or
             ["metrics", "a.npz", "a.npz", "--metric", "psnr", "--out", "a.npz", "--force"]),
        Case("report --out on a folder with the user's figures/",
             lambda w: _results_and_figures(w) and ["report", "a/results.parquet", "--out", "mine"]),
        Case("suite name is an absolute path", lambda w: ["run", str(suite(w / "s.toml", SUITE.replace('"s"', '"/tmp/x"')))]),
        Case("suite name climbs out", lambda w: ["run", str(suite(w / "s.toml", SUITE.replace('"s"', '"../../.."')))]),
        Case("npz: one label of 10**9", lambda w: ["distill", "--data",
                                                   f"npz:{npz(w / 'x.npz', train_labels=np.array([0, 1] * 9 + [1, 10**9]))}",
                                                   "--out", "o", *FAST]),
        Case("npz: a header declaring 10**15 bytes", lambda w: ["distill", "--data", f"npz:{_huge_header(w / 'x.npz')}",
                                                                "--out", "o", *FAST]),
        Case("spec: size=100000", lambda w: ["distill", "--data", "digits?size=100000", "--out", "o", *FAST]),
        Case("distill: ipc 10**9 with init=noise", lambda w: ["distill", "--data", "digits", "--method", "dm", "--ipc",
                                                             "1000000000", "--set", "init=noise", "--no-evaluate",
                                                             "--out", "o"]),
        Case("folder: a PNG declaring 20000 x 20000", lambda w: png_folder(w / "f") and _png_bomb(w / "f" / "a" / "big.png")
             and ["distill", "--data", f"folder:{w / 'f'}", "--out", "o", *FAST]),
        Case("metrics: a PNG declaring 20000 x 20000", lambda w: _png_bomb(w / "r" / "0.png") and
             _png_bomb(w / "c" / "0.png") and ["metrics", "r", "c"]),
        Case("release.json not UTF-8", lambda w: release(w / "r") and (w / "r" / "release.json").write_bytes(b'{"method": "\xff"}')
             and audit("r")),
        Case("suite TOML not UTF-8", lambda w: (w / "s.toml").write_bytes(LATIN1) and ["run", str(w / "s.toml")]),
        _card_case("not UTF-8", b'name = "caf\xe9"\n'),
        Case("provenance fingerprint is an int", lambda w: release(w / "r", provenance={"source_fingerprint": 5})
             and audit("r")),
        Case("release config is a string", lambda w: _manifest(w, config="fast") and audit("r")),
        Case("release ipc is a string", lambda w: _manifest(w, ipc="1") and audit("r")),
        _suite_case('seeds = "x"', SUITE.replace('datasets', 'seeds = "x"\ndatasets')),
        _suite_case("releases = 5", 'name = "s"\ndatasets = ["digits"]\nreleases = 5\n'),
        _suite_case("[audit] config = 3", SUITE + '[audit]\nconfig = 3\n'),
        _suite_case("ipc = [true]", SUITE.replace('"original"', '"random"\nipc = [true]')),
        _card_case("classes = 5", CARD.replace('["a", "b"]', "5")),
        _card_case("loader = 7", CARD.replace('"digits"', "7")),
        Case("folder: a file name that is not UTF-8", lambda w: png_folder(w / "f") and
             _rename(w / "f" / "a" / "0.png", b"\xff.png") and ["distill", "--data", f"folder:{w / 'f'}", "--out", "o", *FAST],
             expect=0),
        Case("audit: a release path that is not UTF-8", lambda w: audit(os.fsdecode(b"r\xff"))),
        Case("npz: zero training images", lambda w: ["distill", "--data", f"npz:{npz(w / 'x.npz', n=(0, 6, 6))}", "--out", "o",
                                                     *FAST]),
        Case("npz: zero test images", lambda w: ["distill", "--data", f"npz:{npz(w / 'x.npz', n=(20, 6, 0))}", "--out", "o",
                                                 *FAST]),
        Case("npz: images of size 0", lambda w: ["distill", "--data", f"npz:{npz(w / 'x.npz', size=0)}", "--out", "o", *FAST]),
        Case("npz: a member that is not an array", lambda w: _raw_member(w / "x.npz") and
             ["distill", "--data", f"npz:{w / 'x.npz'}", "--out", "o", *FAST]),
        Case("report: a Parquet file with other columns", lambda w: _other_parquet(w / "t.parquet") and
             ["report", "t.parquet", "--out", "rep"]),
        Case("report: a corrupt jobs/*/job.json", lambda w: _results_and_figures(w) and _corrupt_job(w / "a") and
             ["report", "a/results.parquet", "--out", "rep"]),
        Case("distill: --out of 300 characters", lambda w: ["distill", "--data", "digits", "--out", "x" * 300, *FAST]),
        Case("distill: --seed beyond 64 bits", lambda w: ["distill", "--data", "digits", "--seed", str(2**70), "--out", "o",
                                                          *FAST]),
        Case("metrics: negative --seed", lambda w: np.savez(w / "a.npz", images=np.zeros((3, 8, 8), np.uint8)) or
             ["metrics", "a.npz", "a.npz", "--seed", "-1"]),
        Case("suite refused for its ipc creates nothing", lambda w: ["run", str(suite(w / "s.toml", SUITE.replace(
            '"original"', '"random"\nipc = [5000]'))), "--out", "o"]),
        Case("suite refused for its data creates nothing", lambda w: ["run", str(suite(w / "s.toml", SUITE)), "--data",
                                                                      f"npz:{npz(w / 'x.npz', n=(0, 6, 6))}", "--out", "o"]),
        Case("PRIVBENCH_REGISTRY is missing", lambda w: ["run", "--list"], env=lambda w: {"PRIVBENCH_REGISTRY": str(w / "no")}),
        Case("a release of a method no plugin provides (a warning, then the audit)",
             lambda w: _manifest(w, method="herding") and audit("r"), expect=0),
        Case("folder: a link back to the root", lambda w: png_folder(w / "f") and
             (w / "f" / "loop").symlink_to(w / "f") is None and ["distill", "--data", f"folder:{w / 'f'}", "--out", "o", *FAST],
             expect=0),
    ]


def _rename(path: Path, new_name: bytes) -> bool:
    os.rename(os.fsencode(path), os.path.join(os.fsencode(path.parent), new_name))
    return True


def _raw_member(path: Path) -> bool:
    npz(path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("train_attr_sex.npy", b"not an array at all")
    return True


def _other_parquet(path: Path) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2]}), path)
    return True


def _results_and_figures(work: Path) -> bool:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from privbench.results import RESULTS_SCHEMA

    (work / "a").mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist([], schema=RESULTS_SCHEMA), work / "a" / "results.parquet")
    (work / "mine" / "figures").mkdir(parents=True, exist_ok=True)
    (work / "mine" / "figures" / "plot.png").write_bytes(b"the user's figure")
    return True


def _corrupt_job(folder: Path) -> bool:
    (folder / "jobs" / "0123456789abcdef").mkdir(parents=True)
    (folder / "jobs" / "0123456789abcdef" / "job.json").write_text("{not json")
    return True
