"""The operator's side of the cutover: the CLI behind start.sh, its state, and process bring-up."""
