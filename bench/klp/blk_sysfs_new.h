/* The new bodies of bench/kernel-patches/blk-sysfs-20.patch, written again for a livepatch
 * module: the same twenty block/blk-sysfs.c show functions, each printing its value
 * followed by " patched". Everything they read comes from <linux/blkdev.h>, so no
 * unexported symbol (and no klp relocation) is needed. LSB_KLP_FUNCS_1 and _20 list the
 * klp_func entries of the 1- and 20-function patches; LSB_KLP_MODULE makes the module.
 *
 * Kept in step with the patch by hand: bench/kernel-guest.sh reads all twenty sysfs files
 * after each enable and disable, so a body that differs from the patch's output fails
 * the benchmark. */
#include <linux/blkdev.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>

#define LSB_SHOW_UL(name, expr)                                                    \
	static ssize_t __maybe_unused lsb_##name(struct request_queue *q, char *page) \
	{                                                                          \
		return sprintf(page, "%lu patched\n", (unsigned long)(expr));      \
	}
#define LSB_SHOW_BYTES(name, field)                                                \
	static ssize_t __maybe_unused lsb_##name(struct request_queue *q, char *page) \
	{                                                                          \
		return sprintf(page, "%llu patched\n",                             \
			       (unsigned long long)q->limits.field << 9);          \
	}

LSB_SHOW_UL(queue_requests_show, q->nr_requests)
/* blk-sysfs.c keeps these two as int, then widens: the same value for real limits. */
LSB_SHOW_UL(queue_max_sectors_show, (int)(queue_max_sectors(q) >> 1))
LSB_SHOW_UL(queue_max_segments_show, queue_max_segments(q))
LSB_SHOW_UL(queue_max_discard_segments_show, queue_max_discard_segments(q))
LSB_SHOW_UL(queue_max_integrity_segments_show, q->limits.max_integrity_segments)
LSB_SHOW_UL(queue_max_segment_size_show, queue_max_segment_size(q))
LSB_SHOW_UL(queue_logical_block_size_show, queue_logical_block_size(q))
LSB_SHOW_UL(queue_physical_block_size_show, queue_physical_block_size(q))
LSB_SHOW_UL(queue_chunk_sectors_show, q->limits.chunk_sectors)
LSB_SHOW_UL(queue_io_min_show, queue_io_min(q))
LSB_SHOW_UL(queue_io_opt_show, queue_io_opt(q))
LSB_SHOW_UL(queue_discard_granularity_show, q->limits.discard_granularity)
LSB_SHOW_BYTES(queue_discard_max_hw_show, max_hw_discard_sectors)
LSB_SHOW_BYTES(queue_discard_max_show, max_discard_sectors)
LSB_SHOW_UL(queue_discard_zeroes_data_show, 0UL)
LSB_SHOW_UL(queue_write_same_max_show, 0UL)
LSB_SHOW_BYTES(queue_write_zeroes_max_show, max_write_zeroes_sectors)
LSB_SHOW_UL(queue_max_hw_sectors_show, (int)(queue_max_hw_sectors(q) >> 1))
LSB_SHOW_UL(queue_virt_boundary_mask_show, q->limits.virt_boundary_mask)
LSB_SHOW_UL(queue_dma_alignment_show, queue_dma_alignment(q))

/* old_sympos 0: each name is unique among vmlinux's symbols (livepatch refuses otherwise). */
#define LSB_KLP_FUNC(name) { .old_name = #name, .new_func = lsb_##name }
#define LSB_KLP_FUNCS_1 LSB_KLP_FUNC(queue_requests_show)
#define LSB_KLP_FUNCS_20                                                           \
	LSB_KLP_FUNCS_1, LSB_KLP_FUNC(queue_max_sectors_show),                     \
	LSB_KLP_FUNC(queue_max_segments_show),                                     \
	LSB_KLP_FUNC(queue_max_discard_segments_show),                             \
	LSB_KLP_FUNC(queue_max_integrity_segments_show),                           \
	LSB_KLP_FUNC(queue_max_segment_size_show),                                 \
	LSB_KLP_FUNC(queue_logical_block_size_show),                               \
	LSB_KLP_FUNC(queue_physical_block_size_show),                              \
	LSB_KLP_FUNC(queue_chunk_sectors_show), LSB_KLP_FUNC(queue_io_min_show),   \
	LSB_KLP_FUNC(queue_io_opt_show),                                           \
	LSB_KLP_FUNC(queue_discard_granularity_show),                              \
	LSB_KLP_FUNC(queue_discard_max_hw_show),                                   \
	LSB_KLP_FUNC(queue_discard_max_show),                                      \
	LSB_KLP_FUNC(queue_discard_zeroes_data_show),                              \
	LSB_KLP_FUNC(queue_write_same_max_show),                                   \
	LSB_KLP_FUNC(queue_write_zeroes_max_show),                                 \
	LSB_KLP_FUNC(queue_max_hw_sectors_show),                                   \
	LSB_KLP_FUNC(queue_virt_boundary_mask_show),                               \
	LSB_KLP_FUNC(queue_dma_alignment_show)

/* One patch of vmlinux (a NULL object name) replacing FUNCS; the module enables it when
 * loaded, the way livepatch modules are used (insmod, then `enabled` 0 to take it back). */
#define LSB_KLP_MODULE(list)                                                      \
	static struct klp_func lsb_funcs[] = { list, {} };                         \
	static struct klp_object lsb_objs[] = { { .funcs = lsb_funcs }, {} };      \
	static struct klp_patch lsb_patch = { .mod = THIS_MODULE, .objs = lsb_objs }; \
	static int __init lsb_init(void) { return klp_enable_patch(&lsb_patch); } \
	static void __exit lsb_exit(void) {}                                       \
	module_init(lsb_init);                                                     \
	module_exit(lsb_exit);                                                     \
	MODULE_LICENSE("GPL");                                                     \
	MODULE_INFO(livepatch, "Y")
