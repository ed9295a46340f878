/*
 * The software CPU's door into the hypervisor: where /dev/kvm is missing
 * (or TESTVM_CPU=soft), open/ioctl/mmap on the KVM device, VM and vCPU
 * descriptors are served by softkvm*.c, a user-space "KVM" on Unicorn 2.1,
 * with KVM's own structures and exit semantics.  Every other descriptor
 * goes to the kernel untouched, so the rest of hv/ does not know which CPU
 * it runs on.
 *
 * Included last by testvm.h, after the system headers: the macros below
 * only rename the calls in the hypervisor's files.
 */
#ifndef SOFTKVM_H
#define SOFTKVM_H

#include <stdbool.h>
#include <sys/types.h>

int sk_open(const char *path, int flags, ...);
int sk_ioctl(int fd, unsigned long request, ...);
void *sk_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
/* Is the VM on the software CPU? */
bool sk_active(void);
/* On the software CPU, exit saying `what` needs KVM (a guest that needs interrupts). */
void sk_require_kvm(const char *what);

#ifndef SOFTKVM_IMPL
#define open(...) sk_open(__VA_ARGS__)
#define ioctl(...) sk_ioctl(__VA_ARGS__)
#define mmap(...) sk_mmap(__VA_ARGS__)
#endif

#endif /* SOFTKVM_H */
