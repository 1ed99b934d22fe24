// SPDX-License-Identifier: GPL-2.0
/* bench/kernel-patches/blk-sysfs-1.patch as a livepatch: queue_requests_show. */
#include "blk_sysfs_new.h"

LSB_KLP_MODULE(LSB_KLP_FUNCS_1);
MODULE_DESCRIPTION("livesplice benchmark: livepatch of 1 block/blk-sysfs.c function");
