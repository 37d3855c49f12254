# Fixed-order chunked reductions shared by the loss kernels (losses.pyx) and the gradient norm
# (optimizers.pyx): an array of n elements is cut into chunks whose length depends on n alone,
# each chunk's partial sum is taken in double by one thread, and the partials are added serially
# in chunk order, so the result is the same for any thread count. The partials live on the
# caller's stack (at most RED_MAX_CHUNKS of them): no allocation per call.

cdef enum:
    RED_CHUNK = 4096          # elements per partial sum, at least
    RED_MAX_CHUNKS = 256      # partials kept on the stack (2 KiB of doubles)


cdef inline Py_ssize_t red_chunk_len(Py_ssize_t n) noexcept nogil:
    """RED_CHUNK, or the multiple of it that keeps n within RED_MAX_CHUNKS chunks (n > 1M)."""
    cdef Py_ssize_t span = <Py_ssize_t>RED_CHUNK * RED_MAX_CHUNKS
    return RED_CHUNK * ((n + span - 1) // span) if n > span else RED_CHUNK
