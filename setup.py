"""Builds ramo._C: the C++ CPU kernels and torch.library registrations, plus the CUDA
kernels when the installed torch has CUDA and a CUDA toolkit is found (CUDA_HOME).
Anything else builds CPU-only without complaint. Set RAMO_NO_CUDA=1 to skip CUDA anyway."""

import os

from setuptools import setup

try:
    import torch
    from torch.utils import cpp_extension
except ImportError as exc:  # an isolated build has no torch: say how to build instead
    raise SystemExit(
        "ramo compiles against the installed torch. Install torch first, then build with "
        "`pip install --no-build-isolation .`"
    ) from exc

CXX_FLAGS = [
    "-O3",
    "-std=c++17",
    # at::parallel_for is inlined from ATen's OpenMP header: without -fopenmp its pragma is
    # ignored and the kernel runs on one thread.
    "-fopenmp",
    # Keep a*b+c as two roundings: every backend must round like the PyTorch reference.
    "-ffp-contract=off",
]
SOURCES = ["csrc/ops.cpp", "csrc/select_rules.cpp", "csrc/cpu/select_rules.cpp",
           "csrc/judge_scores.cpp", "csrc/cpu/judge_scores.cpp",
           "csrc/rule_head_select.cpp", "csrc/cpu/rule_head_select.cpp"]
CUDA_SOURCES = ["csrc/cuda/select_rules.cpp", "kernels/cuda/select_rules.cu",
                "csrc/cuda/judge_scores.cpp", "kernels/cuda/judge_scores.cu",
                "csrc/cuda/rule_head_select.cpp", "kernels/cuda/rule_head_select.cu"]


def loaded_libstdcxx() -> list[str]:
    """The C++ runtime torch runs with (Linux), to link ramo._C against by path.

    A compiler whose wrapper links libstdc++ statically (some CUDA build images ship one) gives
    ramo._C a second copy of the C++ runtime beside torch's; the first error message that
    formats a number then crashes the process inside the copy's stream code. Naming the
    shared library that torch loaded resolves those symbols there, whatever the compiler's
    default; with a compiler that links it dynamically this changes nothing."""
    try:
        with open("/proc/self/maps") as maps:  # the path is the sixth field and may hold spaces
            fields = (line.rstrip("\n").split(maxsplit=5) for line in maps)
            paths = {f[5] for f in fields if len(f) == 6 and "/libstdc++.so" in f[5]}
    except OSError:
        return []
    # One SONAME maps one file; a replaced file shows as "... (deleted)" and is skipped.
    return sorted(p for p in paths if os.path.isfile(p))[:1]


LINK_ARGS = ["-fopenmp"] + loaded_libstdcxx()


def with_cuda() -> bool:
    return (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and os.environ.get("RAMO_NO_CUDA") != "1"
    )


def extension():
    if with_cuda():
        return cpp_extension.CUDAExtension(
            "ramo._C",
            SOURCES + CUDA_SOURCES,
            extra_compile_args={
                "cxx": CXX_FLAGS + ["-DRAMO_WITH_CUDA"],
                "nvcc": ["-O3", "-std=c++17", "-DRAMO_WITH_CUDA"],
            },
            extra_link_args=LINK_ARGS,
        )
    return cpp_extension.CppExtension("ramo._C", SOURCES, extra_compile_args=CXX_FLAGS,
                                      extra_link_args=LINK_ARGS)


setup(
    packages=["ramo", "ramo.adapter", "ramo.io", "ramo.judge", "ramo.models", "ramo.ops",
              "ramo.ratings",
              "ramo.reference", "ramo.reward", "ramo.triton_kernels"],
    package_dir={"ramo.triton_kernels": "kernels/triton"},
    # The default rule pool (`--rules default`) and the demo's data ship inside the package.
    package_data={"ramo": ["data/rules/*.jsonl", "data/rules/README.md", "data/demo/*.jsonl",
                           "data/demo/*.jsonl.gz", "data/demo/*.json", "data/demo/README.md"]},
    ext_modules=[extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension},
)
