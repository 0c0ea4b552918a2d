"""Files users write and read: the strict reader every file goes through (reader), instance
files (instance_file), result and solution documents (solution), solver profiles (profiles)."""
