// placeholder: written by the create work
