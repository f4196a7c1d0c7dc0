"""A folder of N small PNG images in class subfolders, for `just bench-record`."""
import os
import struct
import sys
import zlib


def png(seed: int) -> bytes:
    # A 28×28 grey image whose pixels depend on the seed, so no two files are alike.
    rows = b"".join(b"\x00" + bytes((seed * 31 + x * 7 + y * 3) % 256 for x in range(28)) for y in range(28))
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


out, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(out, f"class{i % 10}")
    os.makedirs(d, exist_ok=True)
    p = os.path.join(d, f"{i:06d}.png")
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(png(i))
print(f"{n} images in {out}")
