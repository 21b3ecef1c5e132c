"""`wabaplane dev` (and `make demo`): the whole product on one machine with the emulator as Meta."""
