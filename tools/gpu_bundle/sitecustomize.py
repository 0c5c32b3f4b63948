"""Stand-ins for packages that laion_clap/librosa import at module level but avvp never calls, so the GPU
bundle stays under the 64 MiB a device call can carry (llvmlite alone is 60 MB, scikit-learn and pandas
~12 MB each). Only used when the real package is absent. numba's decorators pass the function through
(librosa then defines its kernels as plain Python; avvp's CLAP path uses only librosa.filters.mel, which
has no jitted code); any other attribute of a stand-in is a function that raises when called, naming it."""
import importlib.abc
import importlib.machinery
import sys
import types

STAND_INS = ("numba", "llvmlite", "sklearn", "pandas")


def _passthrough(*args, **kwargs):
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return args[0]
    return lambda fn: fn


class _StandIn(types.ModuleType):
    __path__: list = []

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if self.__name__.split(".")[0] == "numba" and name in (
                "jit", "njit", "vectorize", "guvectorize", "stencil", "generated_jit", "cfunc", "jit_module"):
            return _passthrough
        if name == "prange":
            return range

        def unavailable(*args, **kwargs):
            raise RuntimeError(f"{self.__name__}.{name} is not in the avvp GPU bundle (a stand-in module)")
        return unavailable


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] not in STAND_INS:
            return None
        for finder in sys.meta_path:
            if finder is not self and getattr(finder, "find_spec", None):
                try:
                    if finder.find_spec(name, path, target) is not None:
                        return None  # the real package is there: use it
                except (ImportError, ValueError):
                    continue
        return importlib.machinery.ModuleSpec(name, self, is_package=True)

    def create_module(self, spec):
        return _StandIn(spec.name)

    def exec_module(self, module):
        pass


sys.meta_path.append(_Finder())
