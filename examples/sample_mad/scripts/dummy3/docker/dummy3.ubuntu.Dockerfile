# CONTEXT {'guest_os': 'UBUNTU'}
ARG BASE_DOCKER=localhost:5000/mad-base:busybox
FROM ${BASE_DOCKER}
ENV MAD_SAMPLE_FLAVOUR=dummy3
