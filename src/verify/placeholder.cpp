// Placeholder so the module builds before its first source lands; delete when adding one.
