"""QR codes drawn in a terminal with Unicode half blocks (two modules per character)."""

from __future__ import annotations

# Index: (top module dark, bottom module dark). Drawn dark-on-light, as phones expect.
_BLOCKS = {(False, False): "█", (True, False): "▄", (False, True): "▀", (True, True): " "}


def render(text: str, error_correction: str = "M") -> str:
    import qrcode  # lazy: the daemon never draws

    level = {"L": qrcode.constants.ERROR_CORRECT_L, "M": qrcode.constants.ERROR_CORRECT_M}
    code = qrcode.QRCode(border=2, error_correction=level[error_correction])
    code.add_data(text)
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    if len(matrix) % 2:
        matrix.append([False] * len(matrix[0]))
    return "\n".join(
        "".join(_BLOCKS[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(matrix[::2], matrix[1::2], strict=True)
    )
