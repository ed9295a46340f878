/*
 * libvmmapi's side of the control protocol (include/tvm_proto.h): one
 * connection per vmctx, one request and one reply at a time.
 */
#ifndef TRANSPORT_H
#define TRANSPORT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "tvm_proto.h"

struct vmctx {
	pthread_mutex_t lock;	/* one request in flight per connection */
	int sock;		/* -1 once the hypervisor is gone */
	int memfd;		/* guest RAM: vm_get_device_fd() */
	struct tvm_kstate *k;	/* vmm.ko's cpusets, shared with the hypervisor */
	int ncpus;
	uint64_t lowmem, highmem;
};

/* Connect to $TESTVM_DIR/NAME; 0 or an errno value (ENOENT: no such VM). */
int tvm_connect(const char *name, int *sock);

/*
 * Send `req`, wait for the reply.  Returns the errno value of the request
 * (0 on success).  A vanished hypervisor gives ENXIO, now and from then on,
 * as the ioctls on a destroyed /dev/vmm/NAME do.  `fd`, if not NULL,
 * receives a descriptor passed with the reply (or -1).
 */
int tvm_call(struct vmctx *ctx, struct tvm_req *req, struct tvm_resp *resp,
    int *fd);

/*
 * Send `req` and do not wait: for a request the hypervisor answers with
 * nothing (TVM_OP_KICK).  0 or ENXIO.
 */
int tvm_post(struct vmctx *ctx, struct tvm_req *req);

#endif /* TRANSPORT_H */
