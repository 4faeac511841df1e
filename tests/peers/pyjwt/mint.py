#!/usr/bin/env python3
"""A token issuer that shares no code with ws-api: PyJWT with `cryptography`.

Generates a fresh key pair, writes its public half as PEM to PUBLIC_PEM, and
prints one signed token per line for each ALG given (RS256, ES256), for the
uid UID, audience AUD, valid for five minutes. For tests/jwt.rs:

    python3 tests/peers/pyjwt/mint.py DIR UID AUD RS256 ES256

writes DIR/RS256.pem and DIR/ES256.pem and prints `ALG TOKEN` lines.
"""
import sys
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def key_for(alg: str):
    if alg.startswith("RS"):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise SystemExit(f"unsupported alg {alg}")


def main(out_dir: str, uid: str, aud: str, algs: list[str]) -> int:
    now = int(time.time())
    for alg in algs:
        key = key_for(alg)
        pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        with open(f"{out_dir}/{alg}.pem", "wb") as f:
            f.write(pem)
        token = jwt.encode({"sub": uid, "aud": aud, "iat": now, "exp": now + 300}, key, algorithm=alg)
        print(alg, token, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]))
