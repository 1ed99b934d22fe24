int sentinel(void);
/* Hidden: visible to every file of prog, absent from its dynamic symbols, and a local
 * symbol in prog's symbol table once linked. */
__attribute__((visibility("hidden"))) int base(void);
