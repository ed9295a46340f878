/*
 * Low-memory code of the demo guest (section .boot, linked and loaded at
 * TRAMPOLINE_PHYS, identity mapped): the BSP's 64-bit entry, the AP
 * trampoline (real mode -> protected mode -> long mode or PAE), and the
 * whole 32-bit PAE vCPU, written by hand because a 64-bit link cannot take
 * compiled 32-bit objects.
 */
#include "layout.h"
#include "testvm_abi.h"

#define SEL_CODE32	0x08
#define SEL_DATA	0x10
#define SEL_CODE64	0x18

#define AP_BOOT_MODE	0	/* struct ap_boot: u32 mode (32 or 64) */
#define AP_BOOT_CR3	4	/*                 u32 page-table root  */
#define AP_BOOT_STACK	8	/*                 u64 initial stack    */
#define AP_BOOT_SIZE	16

#define PAE32_DELAY	2500	/* loop turns per tick: ~10k instructions */

	.section .boot, "awx"

/* ---- AP trampoline: a started AP arrives here with CS=0x0800, IP=0 ---- */
	.code16
	.globl ap_trampoline
ap_trampoline:
	cli
	ljmp	$0, $1f			/* CS=0 so link addresses work as offsets */
1:	xorw	%ax, %ax
	movw	%ax, %ds
	movw	%ax, %ss
	lgdtl	boot_gdt_desc
	movl	%cr0, %eax
	orl	$1, %eax		/* CR0.PE */
	movl	%eax, %cr0
	ljmpl	$SEL_CODE32, $ap_prot32

	.code32
ap_prot32:
	movw	$SEL_DATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	TVM_LAPIC_GPA + 0x20, %ebx	/* APIC ID register ... */
	shrl	$24, %ebx			/* ... is our vCPU id */
	movl	%ebx, %esi
	shll	$4, %esi			/* * AP_BOOT_SIZE */
	movl	ap_boot + AP_BOOT_CR3(%esi), %eax
	movl	%eax, %cr3
	movl	%cr4, %eax
	orl	$0x20, %eax			/* CR4.PAE: both paths use it */
	movl	%eax, %cr4
	cmpl	$32, ap_boot + AP_BOOT_MODE(%esi)
	je	pae32_start
	movl	$0xc0000080, %ecx		/* EFER */
	rdmsr
	orl	$0x100, %eax			/* LME */
	wrmsr
	movl	%cr0, %eax
	orl	$0x80000000, %eax		/* PG: long mode is now active */
	movl	%eax, %cr0
	ljmpl	$SEL_CODE64, $ap_long64

/*
 * ---- The 32-bit vCPU: protected mode for good -------------------------
 * It asks for PAE paging.  A CPU that refuses (kvm_pvm raises #GP for
 * paging outside long mode) lands in pae32_gp, and the vCPU carries on in
 * protected mode without paging; layout.pae_active says which happened.
 */
pae32_start:
	movl	ap_boot + AP_BOOT_STACK(%esi), %esp
	lidt	pae32_idt_desc
	movl	%cr0, %eax
	orl	$0x80000000, %eax		/* PG with CR4.PAE, EFER.LME clear */
	movl	%eax, %cr0			/* may #GP: see pae32_gp */
	movl	$1, LAYOUT_PHYS + OFF_PAE_ACTIVE
	movl	$PAE_WINDOW_VBASE, pae32_private
	jmp	pae32_run
pae32_refused:
	movl	%cr4, %eax
	andl	$~0x20, %eax			/* no paging: drop CR4.PAE too */
	movl	%eax, %cr4
pae32_run:
	xorl	%ebp, %ebp
	pushl	%ebx
	call	pae32_main
2:	hlt
	jmp	2b

/*
 * #GP while turning paging on: drop the exception frame (error code, EIP,
 * CS, EFLAGS; same privilege) and go on without paging.  No iret: kvm_pvm
 * cannot emulate a 32-bit iret either.
 */
pae32_gp:
	addl	$16, %esp
	jmp	pae32_refused

/* void pae32_main(int cpu): record mode and CR3, then tick forever. */
	.type	pae32_main, @function
pae32_main:
	pushl	%ebp
	movl	%esp, %ebp
	movl	8(%ebp), %eax
	shll	$6, %eax			/* * PERCPU_SIZE */
	leal	LAYOUT_PHYS + OFF_PERCPU(%eax), %edi
	movl	%cr3, %eax
	movl	%eax, PC_CR3(%edi)
	movl	$0, PC_CR3 + 4(%edi)
	movl	$32, PC_MODE(%edi)
3:	pushl	%edi
	call	pae32_tick
	addl	$4, %esp
	jmp	3b
	.size	pae32_main, . - pae32_main

/* void pae32_tick(struct percpu *pc): count, touch the private page, wait. */
	.type	pae32_tick, @function
pae32_tick:
	pushl	%ebp
	movl	%esp, %ebp
	movl	8(%ebp), %edx
	addl	$1, PC_COUNTER(%edx)
	adcl	$0, PC_COUNTER + 4(%edx)
	movl	pae32_private, %eax		/* PAE window, or phys if no paging */
	movl	(%eax), %eax
	movl	$PAE32_DELAY, %ecx
4:	decl	%ecx
	jnz	4b
	popl	%ebp
	ret
	.size	pae32_tick, . - pae32_tick

/* ---- Long-mode APs continue here, then into C ------------------------ */
	.code64
ap_long64:
	movw	$SEL_DATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movl	%ebx, %ebx			/* upper halves are undefined */
	movl	%esi, %esi
	movq	ap_boot + AP_BOOT_STACK(%rsi), %rsp
	xorl	%ebp, %ebp
	movl	%ebx, %edi
	movabsq	$ap_main, %rax
	callq	*%rax
5:	hlt
	jmp	5b

/* ---- BSP entry: 64-bit mode on the loader's identity map -------------- */
	.globl	boot64
	.type	boot64, @function
boot64:
	cli
	movq	%rdi, %r12			/* struct tvm_boot_info (phys) */
	lgdt	boot_gdt_desc
	pushq	$SEL_CODE64
	leaq	6f(%rip), %rax
	pushq	%rax
	lretq
6:	movw	$SEL_DATA, %ax
	movw	%ax, %ds
	movw	%ax, %es
	movw	%ax, %ss
	movw	%ax, %fs
	movw	%ax, %gs
	movl	$boot_pml4, %eax		/* adds the -2 GiB kernel mapping */
	movq	%rax, %cr3
	movabsq	$stacks + GUEST_STACK_SIZE, %rsp	/* BSP: stacks[0] */
	xorl	%ebp, %ebp
	movq	%r12, %rdi
	movabsq	$kmain, %rax
	callq	*%rax
7:	hlt
	jmp	7b
	.size	boot64, . - boot64

/* ---- Data ------------------------------------------------------------- */
	.balign	16
boot_gdt:
	.quad	0
	.quad	0x00cf9a000000ffff		/* 0x08 code, 32-bit */
	.quad	0x00cf92000000ffff		/* 0x10 data */
	.quad	0x00af9a000000ffff		/* 0x18 code, 64-bit */
boot_gdt_desc:
	.word	4 * 8 - 1
	.quad	boot_gdt

/* Where the 32-bit vCPU finds its private page. */
	.balign	4
pae32_private:
	.long	PRIVATE_PHYS + PAE_CPU * PRIVATE_STRIDE

/* The 32-bit vCPU's IDT: only #GP (13), a 32-bit interrupt gate. */
	.balign	8
pae32_idt:
	.fill	13, 8, 0
	.word	pae32_gp			/* offset 15:0 (.boot is below 64 KiB) */
	.word	SEL_CODE32
	.word	0x8e00				/* present, DPL 0, 32-bit interrupt gate */
	.word	0				/* offset 31:16 */
pae32_idt_desc:
	.word	14 * 8 - 1
	.long	pae32_idt

/* Per-AP start parameters, filled by the BSP before each spin-up. */
	.balign	16
	.globl	ap_boot
ap_boot:
	.fill	GUEST_MAXCPU * AP_BOOT_SIZE, 1, 0

/*
 * The BSP's first tables: phys [0, 1 GiB) at 0 and at -2 GiB, through one
 * shared directory of 2 MiB pages (this KVM may lack 1 GiB pages).
 */
	.balign	4096
boot_pml4:
	.quad	boot_pdpt_lo + 0x3
	.fill	510, 8, 0
	.quad	boot_pdpt_hi + 0x3
boot_pdpt_lo:
	.quad	boot_pd + 0x3
	.fill	511, 8, 0
boot_pdpt_hi:
	.fill	510, 8, 0
	.quad	boot_pd + 0x3
	.quad	0
boot_pd:
	.set	i, 0
	.rept	512
	.quad	(i << 21) | 0x83
	.set	i, i + 1
	.endr
