// SPDX-License-Identifier: GPL-2.0
/* bench/kernel-patches/blk-sysfs-20.patch as a livepatch: twenty show functions. */
#include "blk_sysfs_new.h"

LSB_KLP_MODULE(LSB_KLP_FUNCS_20);
MODULE_DESCRIPTION("livesplice benchmark: livepatch of 20 block/blk-sysfs.c functions");
