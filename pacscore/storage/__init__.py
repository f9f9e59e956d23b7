"""MAG devices, FileNameSyntax, atomic Part-10 writer, regen."""
