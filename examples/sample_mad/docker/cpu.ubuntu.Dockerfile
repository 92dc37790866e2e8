# CONTEXT {'guest_os': 'UBUNTU'}
# Vendor-neutral image: any gpu_vendor (AMD, NVIDIA or NONE for CPU-only nodes) selects it.
ARG BASE_DOCKER=localhost:5000/mad-base:busybox
FROM ${BASE_DOCKER}
ENV MAD_SAMPLE_FLAVOUR=cpu
