from __future__ import annotations

from benchmarks.env import cpu_name

_PROCESSOR = """processor\t: {n}
vendor_id\t: AuthenticAMD
cpu family\t: {family}
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu sse2 {flags}

"""


def test_the_first_processor_is_named_with_its_family_model_and_fast_p256_path() -> None:
    text = _PROCESSOR.format(n=0, family=26, flags="bmi2 adx avx2") + _PROCESSOR.format(n=1, family=25, flags="")
    assert cpu_name(text, "x86_64") == "AMD EPYC (family 26, model 2, MULX/ADX)"


def test_a_cpu_without_mulx_or_adx_says_so() -> None:
    assert cpu_name(_PROCESSOR.format(n=0, family=25, flags="bmi2"), "") == "AMD EPYC (family 25, model 2, no MULX/ADX)"


def test_a_cpuinfo_without_family_keeps_the_name_or_the_fallback() -> None:
    assert cpu_name("processor\t: 0\nmodel name\t: Neoverse\n", "aarch64") == "Neoverse"
    assert cpu_name("processor\t: 0\nBogoMIPS\t: 50.00\n", "aarch64") == "aarch64"
