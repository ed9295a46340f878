/*
 * Carrying libvmmapi's "ioctls" to the hypervisor process.
 *
 * Never crash, never hang forever: sends use MSG_NOSIGNAL (no SIGPIPE in
 * the caller), replies wait at most TVM_REPLY_TIMEOUT_S, and any failure of
 * the connection itself turns into ENXIO for this and every later call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "transport.h"

#define TVM_REPLY_TIMEOUT_S	20

int
tvm_connect(const char *name, int *sockp)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = TVM_REPLY_TIMEOUT_S };
	const char *dir = getenv("TESTVM_DIR");
	int sock;

	if (name == NULL || *name == '\0' || strchr(name, '/') != NULL)
		return ENOENT;
	if (dir == NULL || *dir == '\0')
		dir = TVM_DEFAULT_DIR;
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir,
	    name) >= sizeof(sa.sun_path))
		return ENAMETOOLONG;
	sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (sock < 0)
		return errno;
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;

		close(sock);
		/* No socket, or a stale one whose VM is gone: no such VM. */
		return err == ECONNREFUSED || err == ENOENT || err == ENOTSOCK ?
		    ENOENT : err;
	}
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	*sockp = sock;
	return 0;
}

static ssize_t
recv_reply(int sock, struct tvm_resp *resp, int *fd)
{
	struct iovec iov = { .iov_base = resp, .iov_len = sizeof(*resp) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	ssize_t n;

	/* A signal in the caller (a profiler's SIGPROF, a Ctrl-C) is not the VM going away. */
	do
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);

	if (n > 0 && fd != NULL) {
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);

		if (c != NULL && c->cmsg_level == SOL_SOCKET &&
		    c->cmsg_type == SCM_RIGHTS)
			memcpy(fd, CMSG_DATA(c), sizeof(int));
	}
	return n;
}

static ssize_t
send_request(int sock, const struct tvm_req *req)
{
	ssize_t n;

	do
		n = send(sock, req, sizeof(*req), MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n;
}

static void
hang_up(struct vmctx *ctx)
{
	if (ctx->sock >= 0)
		close(ctx->sock);
	ctx->sock = -1;
}

int
tvm_post(struct vmctx *ctx, struct tvm_req *req)
{
	int err = 0;

	req->magic = TVM_PROTO_MAGIC;
	pthread_mutex_lock(&ctx->lock);
	if (ctx->sock < 0) {
		err = ENXIO;
	} else if (send_request(ctx->sock, req) != (ssize_t)sizeof(*req)) {
		hang_up(ctx);
		err = ENXIO;
	}
	pthread_mutex_unlock(&ctx->lock);
	return err;
}

int
tvm_call(struct vmctx *ctx, struct tvm_req *req, struct tvm_resp *resp, int *fd)
{
	int err;

	if (fd != NULL)
		*fd = -1;
	req->magic = TVM_PROTO_MAGIC;
	pthread_mutex_lock(&ctx->lock);
	if (ctx->sock < 0) {
		err = ENXIO;
	} else if (send_request(ctx->sock, req) != (ssize_t)sizeof(*req) ||
	    recv_reply(ctx->sock, resp, fd) != (ssize_t)sizeof(*resp)) {
		/* EOF, EPIPE, ECONNRESET or a timeout: the VM is gone for us. */
		hang_up(ctx);
		err = ENXIO;
	} else {
		err = resp->error;
	}
	pthread_mutex_unlock(&ctx->lock);
	return err;
}
