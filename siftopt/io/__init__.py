"""Files users write and read: the strict reader every file goes through (reader), instance
files (instance_file), result and solution documents (solution), solver profiles (profiles),
the memory limit readers check before they allocate (limits), and seeded mutations of valid
files for the robustness tests (fuzz)."""
