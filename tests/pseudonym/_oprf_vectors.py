"""The RFC known answers the OPRF tests share, and their check for a bare CryptoError.

Frozen from the RFCs:

* RFC 9497 Appendix A.1.1 (ristretto255-SHA512, OPRF mode), copied from
  facebook/voprf ``src/tests/cfrg_vectors.rs`` (taken from the draft-irtf-cfrg-voprf-19
  source, whose vectors RFC 9497 kept) and checked against a test suite that quotes
  RFC 9497 itself. A.1.2 (VOPRF mode) gives ``skSm`` and ``pkSm`` for another context
  string, which checks DeriveKeyPair's contextString handling and ScalarMultGen.
* RFC 9380 Appendix K.3, expand_message_xmd(SHA-512) with
  DST ``QUUX-V01-CS02-with-expander-SHA512-256``.

Used by test_oprf.py, test_oprf_validation.py and test_blind.py.
"""

from __future__ import annotations

import pytest

from koble.errors import CryptoError

# -- RFC 9497 Appendix A.1.1: ristretto255-SHA512, OPRF mode --------------------------------

SEED = bytes.fromhex("a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3")
KEY_INFO = bytes.fromhex("74657374206b6579")
SK_SM = bytes.fromhex("5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e")
VECTORS = [
    {  # Test Vector 1, Batch Size 1
        "Input": "00",
        "Blind": "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        "BlindedElement": "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
        "EvaluationElement": "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
        "Output": "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3"
        "ab9135e3bd69955851de4b1f9fe8a0973396719b7912ba9ee8aa7d0b5e24bcf6",
    },
    {  # Test Vector 2, Batch Size 1
        "Input": "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
        "Blind": "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706",
        "BlindedElement": "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
        "EvaluationElement": "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
        "Output": "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4"
        "f2a6413a6bf6fa5e19ba6348eb673934a722a7ede2e7621306d18951e7cf2c73",
    },
]
# RFC 9497 Appendix A.1.2: the same seed and info in VOPRF mode (contextString mode 0x01).
VOPRF_SK_SM = bytes.fromhex("e6f73f344b79b379f1a0dd37e07ff62e38d9f71345ce62ae3a9bc60b04ccd909")
VOPRF_PK_SM = bytes.fromhex("c803e2cc6b05fc15064549b5920659ca4a77b2cca6f04f6b357009335476ad4e")

# -- RFC 9380 Appendix K.3: expand_message_xmd(SHA-512) -------------------------------------

XMD_DST = b"QUUX-V01-CS02-with-expander-SHA512-256"
XMD_MESSAGES = {
    "empty": b"",
    "abc": b"abc",
    "abcdef": b"abcdef0123456789",
    "q128": b"q128_" + b"q" * 128,
    "a512": b"a512_" + b"a" * 512,
}
XMD_VECTORS = [
    ("empty", 0x20, "6b9a7312411d92f921c6f68ca0b6380730a1a4d982c507211a90964c394179ba"),
    ("abc", 0x20, "0da749f12fbe5483eb066a5f595055679b976e93abe9be6f0f6318bce7aca8dc"),
    ("abcdef", 0x20, "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58"),
    ("q128", 0x20, "7336234ee9983902440f6bc35b348352013becd88938d2afec44311caf8356b3"),
    ("a512", 0x20, "57b5f7e766d5be68a6bfe1768e3c2b7f1228b3e4b3134956dd73a59b954c66f4"),
    (
        "empty",
        0x80,
        "41b037d1734a5f8df225dd8c7de38f851efdb45c372887be655212d07251b921"
        "b052b62eaed99b46f72f2ef4cc96bfaf254ebbbec091e1a3b9e4fb5e5b619d2e"
        "0c5414800a1d882b62bb5cd1778f098b8eb6cb399d5d9d18f5d5842cf5d13d7e"
        "b00a7cff859b605da678b318bd0e65ebff70bec88c753b159a805d2c89c55961",
    ),
    (
        "abc",
        0x80,
        "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11"
        "bdd7732d8b38adb4a0edc26a0cef4bb45217135456e58fbca1703cd6032cb134"
        "7ee720b87972d63fbf232587043ed2901bce7f22610c0419751c065922b48843"
        "1851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1",
    ),
    (
        "abcdef",
        0x80,
        "3f721f208e6199fe903545abc26c837ce59ac6fa45733f1baaf0222f8b7acb04"
        "24814fcb5eecf6c1d38f06e9d0a6ccfbf85ae612ab8735dfdf9ce84c372a77c8"
        "f9e1c1e952c3a61b7567dd0693016af51d2745822663d0c2367e3f4f0bed827f"
        "eecc2aaf98c949b5ed0d35c3f1023d64ad1407924288d366ea159f46287e61ac",
    ),
    (
        "q128",
        0x80,
        "b799b045a58c8d2b4334cf54b78260b45eec544f9f2fb5bd12fb603eaee70db7"
        "317bf807c406e26373922b7b8920fa29142703dd52bdf280084fb7ef69da78af"
        "df80b3586395b433dc66cde048a258e476a561e9deba7060af40adf30c64249c"
        "a7ddea79806ee5beb9a1422949471d267b21bc88e688e4014087a0b592b695ed",
    ),
    (
        "a512",
        0x80,
        "05b0bfef265dcee87654372777b7c44177e2ae4c13a27f103340d9cd11c86cb2"
        "426ffcad5bd964080c2aee97f03be1ca18e30a1f14e27bc11ebbd650f305269c"
        "c9fb1db08bf90bfc79b42a952b46daf810359e7bc36452684784a64952c343c5"
        "2e5124cd1f71d474d5197fefc571a92929c9084ffe1112cf5eea5192ebff330b",
    ),
]

BARE = str(CryptoError())


def bare(error: pytest.ExceptionInfo[CryptoError]) -> bool:
    """A CryptoError that says nothing beyond the default message."""
    return type(error.value) is CryptoError and str(error.value) == BARE
