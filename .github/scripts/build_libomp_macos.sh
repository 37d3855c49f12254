#!/usr/bin/env bash
# Build LLVM's OpenMP runtime (libomp) for the wheel's macOS deployment target, into PREFIX.
# Homebrew's libomp targets the runner's own macOS and must never be vendored (see delocate's
# checks); cibuildwheel's delocate copies this one into the wheel under a renamed install name.
set -euo pipefail
PREFIX=${1:?usage: build_libomp_macos.sh PREFIX}
VERSION=${LIBOMP_VERSION:-19.1.7}
ARCH=$(uname -m)
export MACOSX_DEPLOYMENT_TARGET=${MACOSX_DEPLOYMENT_TARGET:-$([ "$ARCH" = arm64 ] && echo 11.0 || echo 10.15)}
work=$(mktemp -d)
cd "$work"
curl -fsSL -o openmp.tar.xz "https://github.com/llvm/llvm-project/releases/download/llvmorg-${VERSION}/openmp-${VERSION}.src.tar.xz"
curl -fsSL -o cmake.tar.xz "https://github.com/llvm/llvm-project/releases/download/llvmorg-${VERSION}/cmake-${VERSION}.src.tar.xz"
tar xf openmp.tar.xz && tar xf cmake.tar.xz && mv "cmake-${VERSION}.src" cmake
cmake -S "openmp-${VERSION}.src" -B build -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_OSX_ARCHITECTURES="$ARCH" \
  -DCMAKE_OSX_DEPLOYMENT_TARGET="$MACOSX_DEPLOYMENT_TARGET" \
  -DLIBOMP_INSTALL_ALIASES=OFF -DOPENMP_ENABLE_LIBOMPTARGET=OFF
cmake --build build --target install -j "$(sysctl -n hw.ncpu)"
ls -l "$PREFIX/lib"
