DROP TABLE packs;
