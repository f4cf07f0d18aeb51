-- duet--1.0.sql: assembled by pg_ext/Makefile from the files in pg_ext/sql/

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION duet" to load this file. \quit

