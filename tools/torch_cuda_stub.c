/* CUDA stand-ins so the PyPI (CUDA 13) builds of torchvision 0.28.0 / torchaudio 2.11.0 load their
 * C++ extensions against the CPU-only torch 2.13.0+cpu. Only CUDA code paths reach these symbols,
 * and a CPU torch never takes them; if one is called anyway the process aborts loudly.
 * Symbol list: `nm -D --undefined-only` of the extensions minus what the CPU torch libraries define
 * (valid for torchvision 0.28.0 / torchaudio 2.11.0 only). */
#include <stdio.h>
#include <stdlib.h>
static void avvp_cuda_stub_abort(const char *name) {
    fprintf(stderr, "avvp torch_cuda_stub: %s was called, but this torch build has no CUDA\n", name);
    abort();
}
#define CUDA_STUB(sym) void sym(void) { avvp_cuda_stub_abort(#sym); }
CUDA_STUB(_ZN2at4cuda26getCurrentDevicePropertiesEv)
CUDA_STUB(_ZN3c104cuda12device_countEv)
CUDA_STUB(_ZN3c104cuda14ExchangeDeviceEa)
CUDA_STUB(_ZN3c104cuda14MaybeSetDeviceEa)
CUDA_STUB(_ZN3c104cuda14current_deviceEv)
CUDA_STUB(_ZN3c104cuda17getStreamFromPoolEba)
CUDA_STUB(_ZN3c104cuda17getStreamFromPoolEia)
CUDA_STUB(_ZN3c104cuda20getCurrentCUDAStreamEa)
CUDA_STUB(_ZN3c104cuda20getDefaultCUDAStreamEa)
CUDA_STUB(_ZN3c104cuda20setCurrentCUDAStreamENS0_10CUDAStreamE)
CUDA_STUB(_ZN3c104cuda29c10_cuda_check_implementationEiPKcS2_jb)
CUDA_STUB(_ZN3c104cuda9GetDeviceEPa)
CUDA_STUB(_ZN3c104cuda9SetDeviceEab)
CUDA_STUB(_ZNK3c104cuda10CUDAStream11synchronizeEv)
CUDA_STUB(_ZNK3c104cuda10CUDAStream5queryEv)
CUDA_STUB(_ZNK3c104cuda10CUDAStream6streamEv)
CUDA_STUB(aoti_torch_get_current_cuda_stream)
CUDA_STUB(torch_c10_cuda_check_msg)
CUDA_STUB(torch_c10_cuda_free_error_msg)
CUDA_STUB(torch_cuda_stream_synchronize)
CUDA_STUB(torch_get_cuda_stream_from_pool)
CUDA_STUB(torch_set_current_cuda_stream)
/* data symbol c10::cuda::CUDACachingAllocator::allocator (an atomic pointer, never used on CPU) */
void *_ZN3c104cuda20CUDACachingAllocator9allocatorE = 0;
