"""Terminal QR codes: the half-block drawing is the QR matrix, module for module."""

from __future__ import annotations

import qrcode

from agent.qr.terminal import render

DARK_TOP = {"▀": (False, True), "▄": (True, False), " ": (True, True), "█": (False, False)}


def test_drawing_decodes_back_to_the_qr_matrix() -> None:
    text = "https://127.0.0.1:8443/registrators/activate?code=ABCD-EFGH-JK12"
    lines = render(text).splitlines()
    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text)
    code.make(fit=True)
    expected = code.get_matrix()
    rows: list[list[bool]] = []
    for line in lines:
        pairs = [DARK_TOP[ch] for ch in line]
        rows.append([top for top, _ in pairs])
        rows.append([bottom for _, bottom in pairs])
    assert rows[: len(expected)] == expected
    assert all(len(line) == len(expected[0]) for line in lines)
