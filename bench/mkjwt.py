#!/usr/bin/env python3
"""Mint a JWT for bench/run.sh with nothing but the Python stdlib and the openssl
CLI (from the team's shared benchmark harness).

usage: mkjwt.py ALG KEYFILE [sub] [ttl_seconds]
  ALG      HS256 | RS256 | ES256 | EdDSA
  KEYFILE  HS256: file holding the shared secret; otherwise: private key PEM
Prints the compact token on stdout. Claims: sub, iss=bench-<alg> (one issuer per
key, so a gateway can pick the key by iss), iat, exp=now+ttl.
A negative ttl gives an already-expired token (for negative tests).
"""
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import tempfile
import time


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def openssl_sign(args, data: bytes) -> bytes:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def der_ecdsa_to_jose(der: bytes, size: int = 32) -> bytes:
    """openssl emits ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } (DER);
    JWS wants the fixed-width concatenation r || s (RFC 7518 section 3.4)."""
    assert der[0] == 0x30, "not a DER sequence"
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02, "not a DER integer"
        n = der[i + 1]
        out += der[i + 2 : i + 2 + n].lstrip(b"\x00").rjust(size, b"\x00")
        i += 2 + n
    return out


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    alg, keyfile = sys.argv[1], sys.argv[2]
    sub = sys.argv[3] if len(sys.argv) > 3 else "bench-user"
    ttl = int(sys.argv[4]) if len(sys.argv) > 4 else 86400
    now = int(time.time())
    header = {"alg": alg, "typ": "JWT"}
    claims = {"sub": sub, "iss": f"bench-{alg.lower()}", "iat": now, "exp": now + ttl}
    enc = lambda obj: b64u(json.dumps(obj, separators=(",", ":")).encode())
    signing_input = f"{enc(header)}.{enc(claims)}".encode()

    if alg == "HS256":
        secret = open(keyfile, "rb").read().strip()
        sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    elif alg == "RS256":
        sig = openssl_sign(["dgst", "-sha256", "-sign", keyfile], signing_input)
    elif alg == "ES256":
        sig = der_ecdsa_to_jose(openssl_sign(["dgst", "-sha256", "-sign", keyfile], signing_input))
    elif alg == "EdDSA":
        # Ed25519 is one-shot: openssl needs a real file (it stats the size), not a pipe.
        with tempfile.NamedTemporaryFile() as msg:
            msg.write(signing_input)
            msg.flush()
            sig = openssl_sign(["pkeyutl", "-sign", "-rawin", "-inkey", keyfile, "-in", msg.name], b"")
    else:
        sys.exit(f"unsupported alg {alg}")
    print(f"{signing_input.decode()}.{b64u(sig)}")


if __name__ == "__main__":
    main()
