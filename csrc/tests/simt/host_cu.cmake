# Rewrites a kernels/cuda .cu file into C++ that runs on the host against this folder's
# cuda_runtime.h (docs/architecture.md, "The CUDA kernels on the host"):
#   kernel<T...><<<grid, block, shared, stream>>>(args);
#     -> ::simt::launch(::simt::Config{grid, block, shared, stream}, [&] { kernel<T...>(args); });
#   extern __shared__ [__align__(N)] type name[];
#     -> type* const name = reinterpret_cast<type*>(::simt::dynamic_shared());
#   __shared__ type name[n]...;
#     -> auto& name = ::simt::static_shared<type[n]...>(__COUNTER__);
# (in function bodies, as kernels/cuda declares them). Everything else compiles as it is.
# Fails if a launch or a __shared__ declaration is left.
#
#   cmake -DIN=kernels/cuda/x.cu -DOUT=build/simt/x.cpp -P csrc/tests/simt/host_cu.cmake
file(READ "${IN}" src)
set(id "[A-Za-z_][A-Za-z0-9_]*")
string(REGEX REPLACE "(${id}<[^;<>]*>)([ \t\r\n]*)<<<([^;]*)>>>\\(([^;]*)\\);"
       "::simt::launch(::simt::Config{\\3}, [&] {\\2\\1(\\4); });" src "${src}")
string(REGEX REPLACE "extern __shared__ __align__\\([0-9]+\\) " "extern __shared__ " src "${src}")
string(REGEX REPLACE "extern __shared__ ([A-Za-z_ ]*[A-Za-z0-9_]) (${id})\\[\\];"
       "\\1* const \\2 = reinterpret_cast<\\1*>(::simt::dynamic_shared());" src "${src}")
string(REGEX REPLACE "__shared__ (${id}) (${id})((\\[[^];]+\\])+);"
       "auto& \\2 = ::simt::static_shared<\\1\\3>(__COUNTER__);" src "${src}")
if(src MATCHES "<<<|>>>|__shared__")
  message(FATAL_ERROR "${IN}: a launch or shared array host_cu.cmake cannot rewrite")
endif()
file(WRITE "${OUT}" "#line 1 \"${IN}\"\n${src}")
